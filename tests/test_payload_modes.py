"""Every payload mode the clients produce, through s3mesh, on both signature-verifying stores
(moto and s3s-fs), with the bytes read back and compared.

- `aws-sdk-s3` (Rust): its own scenario binary (`tests/aws-sdk-client`), which reports the
  `x-amz-content-sha256` of every request it sent.
- `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: the default of current SDKs over HTTPS, sent here by a
  client of our own (SDKs sign the payload instead over plain HTTP), aws-chunked with a CRC32
  trailer, at sizes around the chunk boundaries.
- boto3 and the aws CLI (hex payload hashes, `UNSIGNED-PAYLOAD`, presigned URLs) are covered in
  test_request_path.py and test_second_store.py.
"""

import base64
import json
import os
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import raw_request, s3_client

ROOT = Path(__file__).resolve().parent.parent
SDK_CLIENT = Path(os.environ.get("S3MESH_SDK_CLIENT_BIN", ROOT / "target" / "debug" / "s3mesh-aws-sdk-client"))
# s3s-fs maps keys to files: "a//b" cannot exist there (see test_second_store.py).
FS_KEYS = "dir%2Fname,plus+sign,with space,unicode-ü-日本"


def run_sdk_client(stack, bucket: str, prefix: str, keys: str | None = None) -> dict:
    args = [str(SDK_CLIENT), "--endpoint", stack.url, "--bucket", bucket, "--prefix", prefix]
    if keys:
        args += ["--keys", keys]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("store", ["moto", "s3s-fs"])
def test_aws_sdk_rust_uploads_multipart_copy_range_presigned_and_awkward_keys(store, stack, fs_stack):
    target = stack if store == "moto" else fs_stack
    report = run_sdk_client(target, "demo", f"sdk-{store}/", None if store == "moto" else FS_KEYS)
    for check in ["small object", "empty object", "6 MiB object", "multipart", "range GET", "copy",
                  "presigned PUT and GET", "list", "delete"]:
        assert check in report["passed"], report
    modes = report["payload_modes"]
    # Over plain HTTP the SDK hashes each body and sends the hex digest; s3mesh reuses it.
    assert any(len(m) == 64 for m in modes["UploadPart"]), modes
    assert any(len(m) == 64 for m in modes["PutObject"]), modes


def aws_chunked_with_trailer(body: bytes, chunk: int) -> bytes:
    """`body` framed as aws-chunked, unsigned, ending with an `x-amz-checksum-crc32` trailer."""
    out = b""
    for i in range(0, len(body), chunk):
        part = body[i:i + chunk]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    return out + b"0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()


@pytest.mark.parametrize("store", ["moto", "s3s-fs"])
@pytest.mark.parametrize("size", [0, 1, 65536, 65537, 300_000])
def test_streaming_unsigned_payload_trailer_round_trip(store, size, stack, fs_stack):
    target = stack if store == "moto" else fs_stack
    body = os.urandom(size)
    framed = aws_chunked_with_trailer(body, 65536)
    key = f"trailer/{size}.bin"
    status, headers, answer = raw_request(target.url, "PUT", f"/demo/{key}", headers={
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }, body=framed)
    assert status == 200, answer
    assert s3_client(target.url).get_object(Bucket="demo", Key=key)["Body"].read() == body


def test_a_repeated_payload_mode_is_refused_not_guessed(stack):
    """Envoy keeps one value of `x-amz-content-sha256` (an inline header, envoy/s3mesh.yaml), so a
    client that sends it twice is seen with both values joined by a comma, as SigV4 and ext_authz
    would join them: s3mesh refuses that in every mode instead of signing one of the two."""
    repeated = [("x-amz-content-sha256", "UNSIGNED-PAYLOAD")] * 2
    status, _, body = raw_request(stack.url, "PUT", "/demo/repeated-payload-mode.bin", headers=repeated, body=b"data")
    assert status == 400, body
    assert b"<Code>InvalidRequest</Code>" in body and b"UNSIGNED-PAYLOAD,UNSIGNED-PAYLOAD" in body, body
    status, _, _ = raw_request(stack.url, "HEAD", "/demo/repeated-payload-mode.bin")
    assert status == 404
