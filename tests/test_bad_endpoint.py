"""A store endpoint that misbehaves mid-response (issue 18, "under pressure"): the client gets an
error, never a silently short object, and the filter counts the failure against the endpoint.

The endpoint is a socket server of our own that reads the request and then misbehaves in one
of four ways; s3mesh is pinned to it (the hint names it alone) so that every request meets it.
"""

import http.client
import socket
import threading
import time

import pytest

from devstack.stack import FILTER_SHELLS, Stack, connection_manager

LENGTH = 100_000
HEAD = (f"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {LENGTH}\r\n"
        "etag: \"bad\"\r\n\r\n").encode()


class BadEndpoint:
    """Answers every request in one `mode`: `reset` (headers, some body, then a TCP reset),
    `short` (headers, some body, then a clean close: fewer bytes than its Content-Length),
    `garbage` (no HTTP at all), `stall` (headers, then nothing)."""

    def __init__(self, mode: str):
        self.mode, self.stop = mode, threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            if self.mode == "garbage":
                conn.sendall(b"this is not HTTP at all\r\n\r\n")
                return
            conn.sendall(HEAD + b"x" * 1000)
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif self.mode == "stall":
                self.stop.wait(30)

    def close(self):
        self.stop.set()
        self.server.close()


def short_idle_timeout(config):
    """A 2 s stream idle timeout on the route (60 s in the product), so a stall ends soon."""
    connection_manager(config)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["idle_timeout"] = "2s"


def fetch(url: str) -> tuple[int, bytes | Exception]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.request("GET", "/demo/anything")
        response = conn.getresponse()
        try:
            return response.status, response.read()
        except (http.client.IncompleteRead, ConnectionError) as error:
            return response.status, error
    finally:
        conn.close()


@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", ["reset", "short", "garbage", "stall"])
def test_a_misbehaving_endpoint_never_yields_a_short_object(tmp_path, mode, shell):
    bad = BadEndpoint(mode)
    pinned = {"endpoints": [bad.address], "unhinted_share": 0}
    try:
        with Stack(tmp_path, extra_endpoints=[bad.address], post_overrides=pinned, shell=shell,
                   envoy_patch=short_idle_timeout) as stack:
            started = time.monotonic()
            status, body = fetch(stack.url)
            took = time.monotonic() - started
            errors = stack.endpoint_counts("s3mesh_endpoint_errors_total")
    finally:
        bad.close()
    if isinstance(body, bytes):
        # A complete answer can only be an error: never a 200 with fewer bytes than announced.
        assert status >= 500 and len(body) != 1000, (status, body[:200])
    else:
        assert isinstance(body, (http.client.IncompleteRead, ConnectionError)), body
    assert took < 15, f"the client waited {took:.1f} s"
    counted = errors.get(bad.address, 0)
    # A stall after the headers counts too: the stream went idle before the client's connection
    # buffer could have filled, so the client cannot have caused it (`stall_blame_bytes`).
    assert counted >= 1, f"{mode}: the endpoint's failure was not counted"
