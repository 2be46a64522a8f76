"""The whole request path with real parts: keyless S3 clients -> Envoy (wasm pre, ext_authz,
wasm post, override_host) -> a store on three endpoints that verifies every signature."""

import os
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import STRANGER, TEAM_A, TEAM_B, raw_request, s3_client
from devstack.stack import VENV_BIN

KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign",
    "unicode-é€-ключ",
    "a//double/./dot",
    "pct%2Fliteral",
    "nested/dir/file",
]


def aws_cli(stack, *args):
    """The aws CLI with no credentials anywhere: no env keys, no config or credentials file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_DEFAULT_REGION="us-east-1")
    return subprocess.run([str(VENV_BIN / "aws"), "--no-sign-request", "--endpoint-url", stack.url, *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_aws_cli_copies_up_and_back_without_credentials(stack, tmp_path):
    src = tmp_path / "upload.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    up = aws_cli(stack, "s3", "cp", str(src), "s3://demo/cli/upload.bin")
    assert up.returncode == 0, up.stderr
    listing = aws_cli(stack, "s3", "ls", "s3://demo/cli/")
    assert listing.returncode == 0 and "upload.bin" in listing.stdout, listing.stderr
    back = tmp_path / "back.bin"
    down = aws_cli(stack, "s3", "cp", "s3://demo/cli/upload.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == src.read_bytes()
    rm = aws_cli(stack, "s3", "rm", "s3://demo/cli/upload.bin")
    assert rm.returncode == 0, rm.stderr
    assert "upload.bin" not in aws_cli(stack, "s3", "ls", "s3://demo/cli/").stdout


@pytest.mark.envoy_matrix
@pytest.mark.parametrize("key", KEYS)
def test_boto3_unsigned_put_get_head_list_delete(stack, key):
    s3 = s3_client(stack.url)
    body = os.urandom(1000) + key.encode()
    s3.put_object(Bucket="demo", Key=key, Body=body, ContentType="application/octet-stream")
    assert s3.get_object(Bucket="demo", Key=key)["Body"].read() == body
    assert s3.head_object(Bucket="demo", Key=key)["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket="demo", Prefix=key)
    assert key in [o["Key"] for o in listed.get("Contents", [])]
    s3.delete_object(Bucket="demo", Key=key)
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket="demo", Key=key)
    assert gone.value.response["Error"]["Code"] == "404"


@pytest.mark.envoy_matrix
def test_virtual_hosted_style_requests_are_signed_as_path_style(stack):
    s3_client(stack.url).put_object(Bucket="demo", Key="vhost/key 1", Body=b"virtual")
    port = stack.url.rsplit(":", 1)[1]
    status, _, body = raw_request(stack.url, "GET", "/vhost/key%201", headers={"host": f"demo.localhost:{port}"})
    assert (status, body) == (200, b"virtual")
    status, _, body = raw_request(stack.url, "GET", "/?list-type=2&prefix=vhost/",
                                  headers={"host": f"demo.localhost:{port}"})
    assert status == 200 and b"<Key>vhost/key 1</Key>" in body
    # Policy applies to the bucket named in the host: team-a may not read demo that way either.
    status, _, _ = raw_request(stack.url, "GET", "/vhost/key%201", TEAM_A, headers={"host": f"demo.localhost:{port}"})
    assert status == 403


def test_each_identity_reaches_only_its_bucket(stack):
    a, b = s3_client(stack.url, TEAM_A), s3_client(stack.url, TEAM_B)
    a.put_object(Bucket="team-a", Key="k", Body=b"from a")
    b.put_object(Bucket="team-b", Key="k", Body=b"from b")
    assert a.get_object(Bucket="team-a", Key="k")["Body"].read() == b"from a"
    for client, bucket in ((a, "team-b"), (b, "team-a")):
        with pytest.raises(ClientError) as denied:
            client.get_object(Bucket=bucket, Key="k")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.envoy_matrix
def test_denial_is_an_s3_xml_error_naming_the_reason(stack):
    status, headers, body = raw_request(stack.url, "GET", "/team-b/k", TEAM_A)
    assert status == 403
    assert headers["content-type"] == "application/xml"
    text = body.decode()
    assert "<Code>AccessDenied</Code>" in text
    assert 'identity "team-a" is not granted read on bucket "team-b"' in text.replace("&quot;", '"')
    assert "<Resource>/team-b/k</Resource>" in text
    assert f"<RequestId>{headers['x-amz-request-id']}</RequestId>" in text and headers["x-amz-request-id"]


def test_the_store_itself_refuses_one_identitys_key_on_the_other_bucket(stack):
    direct = s3_client(f"http://{stack.endpoints[0]}", signed_with=stack.credentials("team-a"))
    direct.put_object(Bucket="team-a", Key="direct", Body=b"ok")
    with pytest.raises(ClientError) as denied:
        direct.put_object(Bucket="team-b", Key="direct", Body=b"no")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_an_unknown_caller_is_denied(stack):
    status, _, body = raw_request(stack.url, "GET", "/demo/k", STRANGER)
    assert status == 403
    assert b"no s3mesh identity is configured for 127.0.0.9" in body


def test_a_forged_x_forwarded_for_does_not_change_the_identity(stack):
    status, _, body = raw_request(stack.url, "GET", "/team-a/k", TEAM_B,
                                  headers={"x-forwarded-for": TEAM_A, "x-real-ip": TEAM_A})
    assert status == 403
    assert b"team-b" in body


def test_client_credentials_are_replaced_not_trusted(stack):
    s3_client(stack.url).put_object(Bucket="demo", Key="signed-by-client", Body=b"payload")
    # A client that signs with keys of its own is re-signed like an unsigned one.
    own = s3_client(stack.url, signed_with=("AKIDCLIENTOWNKEY0000", "client-own-secret"))
    assert own.get_object(Bucket="demo", Key="signed-by-client")["Body"].read() == b"payload"
    # Forged credential headers are dropped.
    status, _, body = raw_request(stack.url, "GET", "/demo/signed-by-client", headers={
        "authorization": "AWS4-HMAC-SHA256 Credential=FORGED/20200101/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host, Signature=00",
        "x-amz-date": "19990101T000000Z",
        "x-amz-security-token": "forged-token",
    })
    assert (status, body) == (200, b"payload")


@pytest.mark.parametrize("version, marker", [("s3v4", "X-Amz-Signature="), ("s3", "Signature=")])
def test_presigned_query_credentials_are_dropped_and_resigned(stack, version, marker):
    s3_client(stack.url).put_object(Bucket="demo", Key="presigned", Body=b"presigned payload")
    own = s3_client(stack.url, signed_with=("AKIDCLIENTOWNKEY0000", "client-own-secret"), signature_version=version)
    url = own.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "presigned"})
    path = url[len(stack.url):]
    assert marker in path
    status, _, body = raw_request(stack.url, "GET", path)
    assert (status, body) == (200, b"presigned payload")


@pytest.mark.envoy_matrix
def test_client_sent_internal_headers_are_stripped(stack):
    s3_client(stack.url).put_object(Bucket="demo", Key="hinted", Body=b"x")
    stripped = lambda: stack.filter_stat("s3mesh_pre_stripped_headers_total")  # noqa: E731
    before = stripped()
    for _ in range(10):
        status, _, _ = raw_request(stack.url, "HEAD", "/demo/hinted", headers={
            "x-gateway-destination-endpoint": stack.endpoints[0],
            "x-s3mesh-operation": "DeleteObject",
        })
        assert status == 200
    assert stripped() - before == 20


@pytest.mark.envoy_matrix
def test_filter_counters_are_in_envoy_prometheus_stats(stack):
    raw_request(stack.url, "GET", "/demo/?list-type=2")
    prom = stack.prometheus()
    for name in ("s3mesh_pre_rejected_total", "s3mesh_post_unhinted_total", "s3mesh_operation_requests_total"):
        assert name in prom, name


def test_an_undecodable_path_gets_an_invalid_uri_error(stack):
    status, headers, body = raw_request(stack.url, "GET", "/demo/%zz")
    assert status == 400
    assert headers["content-type"] == "application/xml"
    assert b"<Code>InvalidURI</Code>" in body


def test_a_chunk_signed_body_with_a_truncated_chunk_signature_is_refused(stack):
    status, _, body = raw_request(stack.url, "PUT", "/demo/chunked", body=b"0;chunk-signature=00\r\n\r\n", headers={
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "0",
    })
    assert status == 400
    assert b"<Code>InvalidRequest</Code>" in body and b"no chunk-signature of 64 hex digits" in body, body


def test_ext_authz_probes_answer(stack):
    import urllib.request

    for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
        with urllib.request.urlopen(stack.authz_health_url + path, timeout=5) as r:
            assert r.status == 200 and r.read().decode().startswith(expected), path


def test_multipart_upload_copy_and_range_get_through_s3mesh(stack):
    import io

    from boto3.s3.transfer import TransferConfig

    s3 = s3_client(stack.url)
    part = 5 * 1024 * 1024
    data = os.urandom(2 * part + 12345)
    s3.upload_fileobj(io.BytesIO(data), "demo", "mp/big.bin",
                      Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=2))
    # moto answers GETs of multipart objects with the composite CRC32 (of the part checksums)
    # but without S3's "-N" marker, so botocore would compare it with the whole body and fail.
    # The bytes are compared here instead.
    s3.meta.config.response_checksum_validation = "when_required"
    assert s3.get_object(Bucket="demo", Key="mp/big.bin")["Body"].read() == data
    ranged = s3.get_object(Bucket="demo", Key="mp/big.bin", Range="bytes=100-199")["Body"].read()
    assert ranged == data[100:200]
    s3.copy_object(Bucket="demo", Key="mp/copy.bin", CopySource={"Bucket": "demo", "Key": "mp/big.bin"})
    assert s3.get_object(Bucket="demo", Key="mp/copy.bin")["Body"].read() == data
    # A copy out of a bucket the caller may not read is refused by s3mesh.
    s3_client(stack.url, TEAM_B).put_object(Bucket="team-b", Key="secret.txt", Body=b"b only")
    with pytest.raises(ClientError) as denied:
        s3.copy_object(Bucket="demo", Key="stolen.txt", CopySource={"Bucket": "team-b", "Key": "secret.txt"})
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "read on bucket" in denied.value.response["Error"]["Message"]


def test_presigned_put_is_resigned_and_stored(stack):
    own = s3_client(stack.url, signed_with=("AKIDCLIENTOWNKEY0000", "client-own-secret"))
    url = own.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "presigned-put.txt"})
    status, _, _ = raw_request(stack.url, "PUT", url[len(stack.url):], body=b"uploaded by URL")
    assert status == 200
    assert s3_client(stack.url).get_object(Bucket="demo", Key="presigned-put.txt")["Body"].read() == b"uploaded by URL"


# Last in the module, so that it sees the logs every other test produced.
def test_no_secret_appears_in_any_response_or_log(stack):
    secrets = [stack.credentials(i["name"])[1] for i in stack.stack["identities"]]
    responses = [
        raw_request(stack.url, "GET", "/demo/signed-by-client"),
        raw_request(stack.url, "GET", "/team-b/k", TEAM_A),
        raw_request(stack.url, "GET", "/demo/%zz"),
        raw_request(stack.url, "GET", "/demo/k", STRANGER),
    ]
    for status, headers, body in responses:
        blob = repr(headers).encode() + body
        for secret in secrets:
            assert secret.encode() not in blob, status
    for log in (stack.workdir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"secret found in {log.name}"
