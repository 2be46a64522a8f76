"""What s3mesh exports over OTLP into a collector run by the test. Every S3 request's span, from
Envoy's OpenTelemetry tracer:
tagged with what s3mesh knows (operation, bucket, identity, decision and reason, the endpoint
chosen first and the one that answered, attempts, time to first byte), never an object key (by
default) or a credential; the client's `traceparent` continued; ext-authz's check (per-request
mode) or grant (grant mode) span in the same trace. The metrics, the per-identity ones with
their labels, through Envoy's OpenTelemetry stat sink; the audit record as OTLP log records.
Both shells, both modes."""

import secrets

import pytest

from conftest import SHELL_MODE_IDS, SHELL_MODES, STRANGER, TEAM_A, TEAM_B, raw_request, s3_client
from devstack.stack import Stack
from otlp_collector import Collector

ENVOY_SERVICE = "s3mesh-envoy"
#: The name of Envoy's span of a downstream request (its ext_authz call, in the per-request
#: mode, is a child span of its own).
REQUEST_SPAN = "ingress"


@pytest.fixture(scope="module")
def collector():
    with Collector() as c:
        yield c


@pytest.fixture(scope="module", params=SHELL_MODES, ids=SHELL_MODE_IDS)
def traced(request, collector, tmp_path_factory):
    shell, mode = request.param
    # Every request hinted (no share left to the fallback policy), so every span names the
    # endpoint chosen first.
    with Stack(tmp_path_factory.mktemp(f"traced-{shell}-{mode}"), authorization=mode, shell=shell,
               otlp_endpoint=collector.endpoint, post_overrides={"unhinted_share": 0.0}) as stack:
        yield stack


def traceparent() -> tuple[str, str, str]:
    """A sampled W3C trace context: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def envoy_span(collector, trace_id: str) -> dict:
    spans = collector.wait_for(lambda s: s["trace_id"] == trace_id and s["service"] == ENVOY_SERVICE
                               and s["name"] == REQUEST_SPAN)
    assert len(spans) == 1, spans
    return spans[0]


# First in the module: team-b's first request through each stack is the one that asks for its grant.
def test_ext_authz_s_span_joins_the_request_s_trace(traced, collector):
    """Per request, ext-authz's check; in grant mode, the grant call the caller's first request
    makes (the filter passes the request's trace context on)."""
    header, trace_id, _ = traceparent()
    assert raw_request(traced.url, "GET", "/team-b/joined", TEAM_B, headers={"traceparent": header})[0] == 404
    name = "ext_authz.check" if traced.authorization == "ext_authz" else "ext_authz.grant"
    spans = collector.wait_for(lambda s: s["trace_id"] == trace_id and s["name"] == name)
    assert len(spans) == 1, collector.wait_for(lambda s: s["trace_id"] == trace_id)
    assert spans[0]["service"] == "s3mesh-ext-authz"
    assert spans[0]["attributes"]["s3mesh.identity"] == "team-b"


def test_an_allowed_request_s_span_says_who_what_and_where(traced, collector):
    header, trace_id, span_id = traceparent()
    key = f"traced/{secrets.token_hex(4)}"
    s3_client(traced.url, TEAM_A).put_object(Bucket="team-a", Key=key, Body=b"traced")
    status, _, body = raw_request(traced.url, "GET", f"/team-a/{key}", TEAM_A, headers={"traceparent": header})
    assert (status, body) == (200, b"traced")
    span = envoy_span(collector, trace_id)
    assert span["parent_span_id"] == span_id, "the client's trace is continued"
    tags = span["attributes"]
    assert tags["s3.operation"] == "GetObject"
    assert tags["s3.bucket"] == "team-a"
    assert tags["s3mesh.identity"] == "team-a"
    assert tags["s3mesh.identity_source"] == "local_file"
    assert tags["s3mesh.decision"] == "allow"
    assert tags.get("s3mesh.reason", "") == ""
    assert tags["s3mesh.endpoint.first"] in traced.endpoints
    assert tags["s3mesh.endpoint"] in traced.endpoints
    assert tags["s3mesh.attempts"] == "1"
    assert int(tags["s3mesh.ttfb_ms"]) >= 0
    assert "s3.key" not in tags and not any(key in str(v) for v in tags.values()), "no object key by default"
    # A request made by a real client without a trace context gets its own trace.
    puts = collector.wait_for(lambda s: s["attributes"].get("s3.operation") == "PutObject"
                              and s["attributes"].get("s3mesh.identity") == "team-a"
                              and s["name"] == REQUEST_SPAN)
    assert puts and all(s["parent_span_id"] == "" for s in puts)


def test_a_refused_request_s_span_carries_the_reason(traced, collector):
    header, trace_id, _ = traceparent()
    status, _, _ = raw_request(traced.url, "GET", "/team-b/not-yours", TEAM_A, headers={"traceparent": header})
    assert status == 403
    tags = envoy_span(collector, trace_id)["attributes"]
    assert tags["s3mesh.decision"] == "deny"
    assert tags["s3mesh.error"] == "AccessDenied"
    assert "is not granted read on bucket \"team-b\"" in tags["s3mesh.reason"]
    assert tags["s3mesh.identity"] == "team-a"

    header, trace_id, _ = traceparent()
    assert raw_request(traced.url, "GET", "/team-a/k", STRANGER, headers={"traceparent": header})[0] == 403
    tags = envoy_span(collector, trace_id)["attributes"]
    assert tags["s3mesh.decision"] == "deny" and "no s3mesh identity" in tags["s3mesh.reason"]
    assert tags.get("s3mesh.identity", "") == ""


def test_no_span_holds_a_secret(traced, collector):
    raw_request(traced.url, "GET", "/team-a/k", TEAM_A,
                headers={"authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x, Signature=feed",
                         "x-amz-security-token": "client-token-must-not-appear"})
    collector.wait_for(lambda s: s["service"] == ENVOY_SERVICE)
    text = repr(collector.spans)
    for secret in [*(traced.credentials(i["name"])[1] for i in traced.stack["identities"]),
                   "client-token-must-not-appear", "Signature=", "AKIDCLIENT", "s3mesh_chunk"]:
        assert secret not in text, secret


def test_metrics_reach_the_collector_with_their_labels(traced, collector):
    s3_client(traced.url, TEAM_A).put_object(Bucket="team-a", Key="otlp-metrics", Body=b"m")
    # The stat sink sends Envoy's tag-extracted names: wasmcustom.s3mesh_identity_requests_total
    # (wasm), s3mesh.identity_requests_total (native); labels become attributes.
    value = collector.metric("identity_requests_total", s3_identity="team-a", s3_class="write")
    assert value is not None and value >= 1, sorted({k[0] for k in collector.metrics if "s3mesh" in k[0]})
    with collector.lock:
        served = {dict(attrs).get("s3_endpoint") for (name, attrs) in collector.metrics
                  if name.endswith("endpoint_requests_total")}
    assert served & set(traced.endpoints)


def test_the_audit_record_reaches_the_collector_as_a_log_record(traced, collector):
    key = f"otlp-audit/{secrets.token_hex(4)}"
    s3_client(traced.url, TEAM_A).put_object(Bucket="team-a", Key=key, Body=b"a")
    records = collector.wait_for(lambda r: r["attributes"].get("key") == key, kind="logs")
    assert len(records) == 1, records
    record = records[0]["attributes"]
    assert (record["operation"], record["bucket"], record["identity"], record["decision"], record["status"]) == \
        ("PutObject", "team-a", "team-a", "allow", "200")
    assert records[0]["body"] == "PutObject 200"
