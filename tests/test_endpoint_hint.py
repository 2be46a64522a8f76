"""The filter's hint drives Envoy's override_host load balancer, failing endpoints are
avoided, and a bad filter configuration stops Envoy instead of running half-configured: in both
filter shells."""

import re

import pytest
import yaml

from conftest import raw_request, s3_client, unused_address
from devstack.stack import AUTHORIZATION_MODES, FILTER_SHELLS, WASM, Stack, StackError, render_envoy

SHELLS = pytest.mark.parametrize("shell", FILTER_SHELLS)


@pytest.mark.envoy_matrix
@SHELLS
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_override_host_sends_every_request_to_the_hinted_endpoint_whatever_the_client_says(tmp_path, shell, mode):
    """In both modes: `pre` takes the client's hint off (in the same filter with grants, in the
    filter before ext_authz without) and `post` replaces whatever got that far."""
    pinned = lambda endpoints: {"endpoints": [endpoints[1]], "unhinted_share": 0}  # noqa: E731
    with Stack(tmp_path, post_overrides=pinned, shell=shell, authorization=mode) as stack:
        s3_client(stack.url).put_object(Bucket="demo", Key="pinned", Body=b"x")
        for i in range(20):
            # Half of the requests carry a hint of their own, naming another endpoint.
            forged = {"x-gateway-destination-endpoint": stack.endpoints[0]} if i % 2 else {}
            assert raw_request(stack.url, "GET", "/demo/pinned", headers=forged)[0] == 200
        counts = stack.upstream_requests()
        assert counts[stack.endpoints[1]] == 21
        assert sum(counts.values()) == 21, counts


def test_the_header_override_host_reads_is_one_of_envoys_inline_headers():
    """Renaming the hint in one place of envoy/s3mesh.yaml but not the other would still balance
    (the test above) while costing Envoy its header index on every request (README, "The hint
    header")."""
    config = yaml.safe_load(render_envoy("127.0.0.1:0", WASM, ["127.0.0.1:1"], "127.0.0.1:2"))
    inline = {h["inline_header_name"] for h in config["inline_headers"] if h["inline_header_type"] == "REQUEST_HEADER"}
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "s3"]
    (policy,) = cluster["load_balancing_policy"]["policies"]
    sources = policy["typed_extension_config"]["typed_config"]["override_host_sources"]
    assert sources and {source["header"] for source in sources} <= inline, (sources, inline)


@SHELLS
@pytest.mark.parametrize("overrides, field", [
    ({"endpoints": ["not-an-address"]}, "endpoints[0]"),
    ({"unhinted_share": 3}, "unhinted_share"),
    ({"weights": [1]}, "weights"),
])
def test_a_bad_filter_configuration_is_refused_naming_the_field(tmp_path, overrides, field, shell):
    with pytest.raises(StackError) as refused:
        Stack(tmp_path, post_overrides=overrides, shell=shell).start()
    message = str(refused.value)
    assert "invalid s3mesh filter configuration" in message and field in message, message


@SHELLS
def test_a_dead_endpoint_costs_no_request_and_is_avoided(tmp_path, shell):
    dead = unused_address()
    with Stack(tmp_path, extra_endpoints=[dead], post_overrides={"unhinted_share": 0}, shell=shell) as stack:
        s3 = s3_client(stack.url)
        s3.put_object(Bucket="demo", Key="k", Body=b"x")
        for _ in range(60):
            status, headers, _ = raw_request(stack.url, "GET", "/demo/k")
            assert status == 200
        errors = stack.endpoint_counts("s3mesh_endpoint_errors_total")
        selected = stack.endpoint_counts("s3mesh_endpoint_selected_total")

    # The dead endpoint was tried first at most a few times (once per worker before it learned,
    # then by probes), every one of those retried elsewhere, and the failures were counted.
    assert errors.get(dead, 0) >= 1, errors
    assert selected.get(dead, 0) <= 6, selected


@pytest.mark.envoy_matrix
def test_internal_headers_do_not_reach_clients(stack):
    s3_client(stack.url).put_object(Bucket="demo", Key="internal", Body=b"x")
    status, headers, _ = raw_request(stack.url, "GET", "/demo/internal")
    assert status == 200
    lowered = {k.lower() for k in headers}
    for name in ("x-envoy-attempt-count", "x-envoy-upstream-service-time", "x-gateway-destination-endpoint",
                 "x-s3mesh-operation"):
        assert name not in lowered, name


@pytest.mark.envoy_matrix
def test_endpoint_and_operation_metrics_are_labelled(stack):
    s3_client(stack.url).put_object(Bucket="demo", Key="labelled", Body=b"x")
    raw_request(stack.url, "GET", "/demo/labelled")
    prom = stack.prometheus()
    for endpoint in stack.endpoints:
        assert f's3mesh_endpoint_selected_total{{s3_endpoint="{endpoint}"}}' in prom
        assert f's3mesh_endpoint_in_flight{{s3_endpoint="{endpoint}"}}' in prom
    assert re.search(r's3mesh_operation_requests_total\{s3_operation="GetObject"\} [1-9]', prom)
    assert re.search(r's3mesh_operation_requests_total\{s3_operation="PutObject"\} [1-9]', prom)
    # Every request served is counted once, under the route by which it reached its endpoint.
    served = re.findall(r's3mesh_endpoint_requests_total\{s3_endpoint="([^"]+)",s3_route="([a-z_]+)"\} (\d+)', prom)
    assert {e for e, _, _ in served} >= set(stack.endpoints)
    assert {r for _, r, _ in served} == {"faster", "less_loaded", "tie", "faded", "probe", "alone", "unhinted",
                                        "retry"}
    assert sum(int(n) for _, _, n in served) >= 2
