"""The native shell (Envoy dynamic module) in a real Envoy: what only it can get wrong. Everything
the filter does is tested through both shells by the other test files (shell × mode)."""

import http.server
import re
import threading

import pytest

from conftest import STRANGER, raw_request
from devstack.stack import (COMBINED_FILTER, WASM, Stack, StackError, connection_manager, native_filter, render_envoy,
                            start_envoy)

pytestmark = pytest.mark.native_shell


@pytest.fixture(scope="module")
def native_stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("native"), shell="native", authorization="ext_authz") as s:
        yield s


@pytest.mark.envoy_matrix
def test_a_panic_in_the_filter_refuses_that_request_and_envoy_keeps_serving(native_stack):
    """Debug builds panic on `x-s3mesh-test-panic`; the hook's panic barrier must turn it into a
    fail-closed S3 error (a panic unwinding into Envoy would abort the process)."""
    stack = native_stack
    assert raw_request(stack.url, "PUT", "/demo/panic-probe", body=b"x")[0] == 200
    before = stack.upstream_requests()
    status, headers, body = raw_request(stack.url, "PUT", "/demo/panic-probe", body=b"y",
                                        headers={"x-s3mesh-test-panic": "1"})
    assert status == 500
    assert headers["content-type"] == "application/xml"
    assert b"<Code>InternalError</Code>" in body and b"nothing was sent to the store" in body
    request_id = headers["x-amz-request-id"]
    assert request_id and f"<RequestId>{request_id}</RequestId>".encode() in body
    assert b"<Resource>/demo/panic-probe</Resource>" in body
    assert stack.upstream_requests() == before, "a refused request reached the store"
    assert stack.alive("envoy")
    status, _, body = raw_request(stack.url, "GET", "/demo/panic-probe")
    assert (status, body) == (200, b"x")
    assert "a panic in the filter was caught" in stack.log("envoy").read_text()


def replace_filter(name: str, typed_config: dict):
    def patch(config):
        for f in connection_manager(config)["http_filters"]:
            if f["name"] == name:
                f["typed_config"] = typed_config
    return patch


def test_a_bad_native_configuration_is_refused_naming_the_field(tmp_path):
    bad = native_filter("both", '{"role":"both","pre":{"virtual_hosts":["localhost"]},"post":{}}')
    with pytest.raises(StackError) as refused:
        Stack(tmp_path, shell="native", envoy_patch=replace_filter(COMBINED_FILTER, bad)).start()
    message = str(refused.value)
    assert "invalid s3mesh filter configuration" in message and "virtual_hosts" in message, message


class HeaderRecorder:
    """An S3 endpoint that answers 200 to everything and keeps the headers it received."""

    def __init__(self):
        recorded = self.recorded = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                recorded.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SIGNED = ("authorization", "x-amz-date", "x-amz-content-sha256", "host")


def test_both_shells_sign_byte_for_byte_alike_and_refuse_alike(tmp_path):
    """The same request through each shell (two Envoys sharing one ext-authz, so one set of
    keys) reaches the store with the same signing headers, and the same refused request gets
    the same answer (only the request id differs)."""
    recorder = HeaderRecorder()
    pinned = {"endpoints": [recorder.address], "unhinted_share": 0}
    try:
        with Stack(tmp_path / "native", extra_endpoints=[recorder.address], post_overrides=pinned,
                   shell="native") as native:
            config = tmp_path / "wasm-envoy.yaml"
            config.write_text(render_envoy("127.0.0.1:0", WASM, native.endpoints + [recorder.address],
                                           native.authz_address, pinned))
            _, address = start_envoy(native.processes, config, tmp_path, concurrency=1, name="envoy-wasm")
            urls = (f"http://{address}", native.url)
            host = {"host": "s3.test"}
            for _ in range(5):  # x-amz-date has one-second resolution: both within one second
                recorder.recorded.clear()
                for url in urls:
                    assert raw_request(url, "GET", "/demo/k%20v?versionId=1", headers=host)[0] == 200
                first, second = ({k: h.get(k) for k in SIGNED} for h in recorder.recorded)
                if first["x-amz-date"] == second["x-amz-date"]:
                    break
            assert first["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
            assert first == second
            refusals = [raw_request(url, "GET", "/demo/k", STRANGER, headers=host) for url in urls]
            assert [status for status, _, _ in refusals] == [403, 403]
            bodies = [re.sub(rb"<RequestId>[^<]*</RequestId>", b"", body) for _, _, body in refusals]
            assert bodies[0] == bodies[1] and b"<Code>AccessDenied</Code>" in bodies[0]
    finally:
        recorder.close()
