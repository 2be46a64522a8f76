"""Fixtures: the real local stack (moto store on several endpoints, ext-authz, Envoy with the
wasm filter) on free ports, and S3 clients that connect from a chosen loopback address.

Distinct loopback source addresses stand in for distinct pods: ext-authz identifies callers by
the address Envoy saw the connection come from (devstack/stack.yaml maps them).
"""

import os
import http.client
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.ports import free_port  # noqa: E402
from devstack.stack import (  # noqa: E402
    AUTHORIZATION_MODES, FILTER_SHELLS, NATIVE_MIN_ENVOY, Stack, envoy_version)

LOCAL_DEV = "127.0.0.1"
TEAM_A = "127.0.0.2"
TEAM_B = "127.0.0.3"
STRANGER = "127.0.0.9"


#: Every end-to-end test runs in both authorization modes (with grants, the default, and with
#: ext_authz checking every request) on both filter shells (wasm and native).
MODES = AUTHORIZATION_MODES
SHELL_MODES = [(shell, mode) for shell in FILTER_SHELLS for mode in MODES]
SHELL_MODE_IDS = [f"{shell}-{mode}" for shell, mode in SHELL_MODES]


#: The release of the Envoy the tests run on (`S3MESH_ENVOY` names another than the default).
ENVOY_RELEASE = envoy_version()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "envoy_matrix: in the representative set `make test-envoy-matrix` runs on every "
        "supported Envoy release")
    config.addinivalue_line("markers", "native_shell: needs the native shell whatever its parameters")


def runs_native(item) -> bool:
    """Whether a collected test runs the native shell: a `native` parameter (alone, or in a
    (shell, mode) pair, or as an indirect fixture's), or the `native_shell` mark."""
    params = getattr(item, "callspec", None)
    values = params.params.values() if params else ()
    return item.get_closest_marker("native_shell") is not None or any(
        v == "native" or (isinstance(v, tuple) and "native" in v) for v in values)


def pytest_collection_modifyitems(items):
    """On an Envoy too old for the native module, its tests are skipped, saying why;
    test_envoy_release.py checks that such an Envoy refuses the module clearly instead."""
    if ENVOY_RELEASE >= NATIVE_MIN_ENVOY:
        return
    version = ".".join(map(str, ENVOY_RELEASE))
    minimum = ".".join(map(str, NATIVE_MIN_ENVOY))
    skip = pytest.mark.skip(reason=f"Envoy {version} cannot load the native shell (needs {minimum} or later)")
    for item in items:
        if runs_native(item):
            item.add_marker(skip)


@pytest.fixture(scope="session", params=SHELL_MODES, ids=SHELL_MODE_IDS)
def shell_mode(request):
    """(filter shell, authorization mode) of the stacks a test gets: a test that uses both
    stacks gets them in the same shell and mode."""
    return request.param


@pytest.fixture(scope="session")
def stack(shell_mode, tmp_path_factory):
    # ext-authz logs at trace level here, so the secret scan covers every log level.
    os.environ.setdefault("RUST_LOG", "trace")
    shell, mode = shell_mode
    with Stack(tmp_path_factory.mktemp(f"stack-{shell}-{mode}"), authorization=mode, shell=shell) as s:
        yield s


@pytest.fixture(scope="session")
def fs_stack(shell_mode, tmp_path_factory):
    """The same stack on a second, independent SigV4 verifier: s3s-fs."""
    shell, mode = shell_mode
    with Stack(tmp_path_factory.mktemp(f"s3s-fs-{shell}-{mode}"), backend="s3s-fs", authorization=mode,
               shell=shell) as s:
        yield s


def s3_client(url: str, source_ip: str = LOCAL_DEV, signed_with=None, signature_version="s3v4"):
    """A boto3 S3 client for `url` whose connections come from `source_ip`.

    Unsigned (`signature_version=UNSIGNED`) unless `signed_with=(access_key, secret)`.
    """
    if signed_with:
        kwargs = dict(aws_access_key_id=signed_with[0], aws_secret_access_key=signed_with[1])
        config = Config(signature_version=signature_version, s3={"addressing_style": "path"},
                        retries={"max_attempts": 1})
    else:
        kwargs = {}
        config = Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"},
                        retries={"max_attempts": 1})
    client = boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1",
                                            config=config, **kwargs)
    # botocore has no setting for the source address; its urllib3 pool manager passes this
    # keyword to every connection it opens.
    client._endpoint.http_session._manager.connection_pool_kw["source_address"] = (source_ip, 0)
    return client


def raw_request(url: str, method: str, path: str, source_ip: str = LOCAL_DEV, headers=None, body=None):
    """One plain HTTP request, for asserting exact statuses, headers and XML bodies. `headers`: a
    mapping, or a list of (name, value) pairs in which a name may repeat."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(source_ip, 0))
    try:
        if isinstance(headers, list):
            conn.putrequest(method, path)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Load:
    """Requests at a fixed pace from a background thread, outcomes recorded with their time."""

    def __init__(self, stack, path: str, every_s: float = 0.01, source_ip: str = LOCAL_DEV):
        self.stack, self.path, self.every_s, self.source_ip = stack, path, every_s, source_ip
        self.outcomes: list[tuple[float, int, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, _, body = raw_request(self.stack.url, "GET", self.path, self.source_ip)
            except OSError as error:
                status, body = 0, repr(error).encode()
            self.outcomes.append((started, status, body))
            time.sleep(max(0.0, self.every_s - (time.monotonic() - started)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def between(self, start: float, end: float = float("inf")) -> list[tuple[int, bytes]]:
        """Outcomes of the requests started in [start, end)."""
        return [(s, b) for started, s, b in self.outcomes if start <= started < end]


GRANT_TTL_S = 2


def unused_address() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"
