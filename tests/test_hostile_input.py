"""Path and host confusion, over-long input and malformed requests: each is refused or
neutralized, never served across a bucket boundary, never a crash. (Forged identity and
credential headers, presigned parameters and internal headers are covered in
test_request_path.py; malformed aws-chunked bodies in test_chunk_signed.py; identity spoofing
through pod IPs in ext-authz's kubernetes_watch tests.)"""

import http.client
from urllib.parse import urlsplit

import pytest

from conftest import LOCAL_DEV, TEAM_A, TEAM_B, raw_request, s3_client

SECRET_BODY = b"team-b only: must never reach another identity"


@pytest.fixture(scope="module")
def team_b_object(stack):
    s3_client(stack.url, TEAM_B).put_object(Bucket="team-b", Key="secret", Body=SECRET_BODY)
    s3_client(stack.url, LOCAL_DEV).put_object(Bucket="demo", Key="k", Body=b"demo object")


def assert_refused(status: int, body: bytes, *, s3_error: bool = True):
    assert 400 <= status < 500, (status, body[:300])
    assert SECRET_BODY not in body
    if s3_error:
        assert body.startswith(b"<?xml") and b"<Error>" in body, body[:300]


@pytest.mark.parametrize("path", [
    "/demo/../team-b/secret",          # dot segments: the key is literal, the bucket is demo
    "/demo/%2e%2e/team-b/secret",      # the same, encoded
    "/demo%2F..%2Fteam-b/secret",      # an encoded slash in the bucket
    "//team-b/secret",                 # an empty first segment
    "/demo%252F..%252Fteam-b/secret",  # double encoding
    "/./team-b/secret",
    "/team-b%00/secret",
])
def test_path_confusion_never_crosses_into_another_bucket(stack, team_b_object, path):
    status, _, body = raw_request(stack.url, "GET", path, LOCAL_DEV)
    assert SECRET_BODY not in body
    assert status >= 400, (status, body[:300])


def test_dot_segments_in_keys_are_data_and_round_trip(stack):
    s3 = s3_client(stack.url, LOCAL_DEV)
    s3.put_object(Bucket="demo", Key="a/../b", Body=b"dots are data")
    assert s3.get_object(Bucket="demo", Key="a/../b")["Body"].read() == b"dots are data"
    status, _, _ = raw_request(stack.url, "GET", "/demo/b", LOCAL_DEV)
    assert status == 404, "a/../b was not normalized into b"


def request_with_host(url: str, host: str, path: str, source: str) -> tuple[int, bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(source, 0))
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_bucket_in_the_host_that_differs_from_the_path_is_the_one_authorized(stack, team_b_object):
    port = urlsplit(stack.url).port
    # Virtual-hosted team-b with a path naming demo: the request is for key "demo/k" in team-b.
    status, body = request_with_host(stack.url, f"team-b.localhost:{port}", "/demo/k", LOCAL_DEV)
    assert_refused(status, body)
    assert b"team-b" in body and b"AccessDenied" in body
    # And the other way round: demo's host with team-b's path is key "team-b/secret" in demo.
    status, body = request_with_host(stack.url, f"demo.localhost:{port}", "/team-b/secret", LOCAL_DEV)
    assert SECRET_BODY not in body and status == 404, (status, body[:300])


def test_a_virtual_host_outside_the_configured_domains_is_path_style(stack, team_b_object):
    status, body = request_with_host(stack.url, "team-b.evil.example", "/secret", LOCAL_DEV)
    assert_refused(status, body)
    assert b'bucket \\"secret\\"' in body or b"secret" in body


def test_an_over_long_key_is_a_client_error(stack):
    status, _, body = raw_request(stack.url, "GET", "/demo/" + "k" * 4096, LOCAL_DEV)
    assert 400 <= status < 500 and SECRET_BODY not in body, (status, body[:300])


def test_over_long_headers_are_refused_and_the_proxy_keeps_serving(stack):
    status, _, _ = raw_request(stack.url, "GET", "/demo/k", LOCAL_DEV, headers={"x-amz-meta-big": "v" * (100 * 1024)})
    assert status == 431
    status, _, body = raw_request(stack.url, "GET", "/demo/k", LOCAL_DEV)
    assert (status, body) == (200, b"demo object")


@pytest.mark.parametrize("method, path, code", [
    ("PATCH", "/demo/k", b"AccessDenied"),     # no S3 operation, so no rule can grant it
    ("GET", "/demo/k?%zz", b"InvalidURI"),     # undecodable query
    ("GET", "/demo/%zz", b"InvalidURI"),       # undecodable path
])
def test_malformed_s3_requests_are_refused_with_s3_errors(stack, method, path, code):
    status, _, body = raw_request(stack.url, method, path, LOCAL_DEV)
    assert_refused(status, body)
    assert code in body, body[:300]


def test_a_method_http_does_not_know_is_refused_by_envoy_before_any_filter(stack):
    status, _, body = raw_request(stack.url, "BREW", "/demo/k", LOCAL_DEV)
    assert status == 400 and SECRET_BODY not in body


def test_the_other_identities_still_work_after_all_that(stack):
    assert s3_client(stack.url, TEAM_A).list_objects_v2(Bucket="team-a")["ResponseMetadata"]["HTTPStatusCode"] == 200
