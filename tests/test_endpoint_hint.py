"""The wasm filter's hint drives Envoy's override_host load balancer, and a bad filter
configuration stops Envoy instead of running half-configured."""

import pytest

from conftest import raw_request, s3_client
from devstack.stack import Stack, StackError


def test_override_host_sends_every_request_to_the_hinted_endpoint(tmp_path):
    pinned = lambda endpoints: {"endpoints": [endpoints[1]], "unhinted_share": 0}  # noqa: E731
    with Stack(tmp_path, post_overrides=pinned) as stack:
        s3_client(stack.url).put_object(Bucket="demo", Key="pinned", Body=b"x")
        for _ in range(20):
            assert raw_request(stack.url, "GET", "/demo/pinned")[0] == 200
        counts = stack.upstream_requests()
        assert counts[stack.endpoints[1]] == 21
        assert sum(counts.values()) == 21, counts


@pytest.mark.parametrize("overrides, field", [
    ({"endpoints": ["not-an-address"]}, "endpoints[0]"),
    ({"unhinted_share": 3}, "unhinted_share"),
    ({"weights": [1]}, "weights"),
])
def test_a_bad_filter_configuration_is_refused_naming_the_field(tmp_path, overrides, field):
    with pytest.raises(StackError) as refused:
        Stack(tmp_path, post_overrides=overrides).start()
    message = str(refused.value)
    assert "invalid s3mesh filter configuration" in message and field in message, message
