"""Chunk-signed uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD` and its `-TRAILER` variant)
through s3mesh: ext-authz replaces the header signature and the `post` filter re-signs every
chunk (and the trailer) from it as the body streams.

Clients: minio-go (built from Debian's sources; it chunk-signs PUTs over plain HTTP and, with
trailing headers on, multipart parts with a signed CRC32C trailer) and a client of our own for
every size, both variants and malformed framing. The store that matters here is s3s-fs: it verifies every chunk and trailer signature (moto only
strips them; it is checked too). The clients hold no S3 key, so their own chunk signatures are
placeholders that s3mesh replaces; a control test shows s3s-fs refuses exactly such stale
signatures when they reach it unchanged.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import raw_request, s3_client

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
PLACEHOLDER = "0" * 64


def framed(body: bytes, chunk: int, trailer: bool, signatures=None) -> bytes:
    """`body` as aws-chunked; chunk signatures from `signatures(data)` (placeholders if None)."""
    sign = signatures or (lambda data: PLACEHOLDER)
    out = b""
    for i in range(0, len(body), chunk):
        part = body[i:i + chunk]
        out += f"{len(part):x};chunk-signature={sign(part)}\r\n".encode() + part + b"\r\n"
    out += f"0;chunk-signature={sign(b'')}\r\n".encode()
    if not trailer:
        return out + b"\r\n"
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    line = f"x-amz-checksum-crc32:{crc}"
    trailer_signature = signatures.trailer(line) if signatures else PLACEHOLDER
    return out + f"{line}\r\nx-amz-trailer-signature:{trailer_signature}\r\n\r\n".encode()


def headers(size: int, trailer: bool) -> dict:
    h = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else ""),
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
    }
    if trailer:
        h["x-amz-trailer"] = "x-amz-checksum-crc32"
    return h


def put_chunked(stack, key: str, body: bytes, chunk: int, trailer: bool):
    return raw_request(stack.url, "PUT", f"/demo/{key}", headers=headers(len(body), trailer),
                       body=framed(body, chunk, trailer))


@pytest.mark.envoy_matrix
@pytest.mark.parametrize("trailer", [False, True], ids=["payload", "payload-trailer"])
@pytest.mark.parametrize("size,chunk", [
    (0, CHUNK),                 # empty object: only the final chunk
    (1, CHUNK),                 # one byte
    (CHUNK, CHUNK),             # exactly one chunk
    (5 * CHUNK + 77, CHUNK),    # many chunks
    (300_001, 8192 + 13),       # chunk sizes that do not line up with Envoy's body callbacks
])
def test_chunk_signed_uploads_are_re_signed_and_read_back_intact(fs_stack, stack, size, chunk, trailer):
    body = os.urandom(size)
    for target in (fs_stack, stack):
        key = f"chunked/{'t' if trailer else 'p'}-{size}-{chunk}"
        status, _, answer = put_chunked(target, key, body, chunk, trailer)
        assert status == 200, answer
        assert s3_client(target.url).get_object(Bucket="demo", Key=key)["Body"].read() == body


class Signer:
    """SigV4 chunk signatures with a real key, written independently of s3mesh's Rust."""

    def __init__(self, secret: str, amz_date: str, scope: str, seed: str):
        key = ("AWS4" + secret).encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.key, self.amz_date, self.scope, self.previous = key, amz_date, scope, seed

    def _chain(self, algorithm: str, rest: str) -> str:
        to_sign = f"{algorithm}\n{self.amz_date}\n{self.scope}\n{self.previous}\n{rest}"
        self.previous = hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()
        return self.previous

    def __call__(self, data: bytes) -> str:
        empty = hashlib.sha256(b"").hexdigest()
        return self._chain("AWS4-HMAC-SHA256-PAYLOAD", f"{empty}\n{hashlib.sha256(data).hexdigest()}")

    def trailer(self, line: str) -> str:
        return self._chain("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(f"{line}\n".encode()).hexdigest())


def signed_directly(fs_stack, key: str, body: bytes, stale_chunk: bool):
    """A chunk-signed PUT straight to an s3s-fs endpoint with the store's real key (no s3mesh)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    access_key, secret = fs_stack.credentials("local-dev")
    endpoint = fs_stack.endpoints[0]
    amz_date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    h = headers(len(body), trailer=False)
    request = AWSRequest(method="PUT", url=f"http://{endpoint}/demo/{key}", headers=dict(h))
    SigV4Auth(Credentials(access_key, secret), "s3", "us-east-1").add_auth(request)
    seed = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = request.headers["X-Amz-Date"]
    signer = Signer(secret, amz_date, f"{amz_date[:8]}/us-east-1/s3/aws4_request", seed)
    sign = (lambda data: PLACEHOLDER) if stale_chunk else signer
    sent = dict(request.headers.items())
    return raw_request(f"http://{endpoint}", "PUT", f"/demo/{key}", headers=sent,
                       body=framed(body, CHUNK, False, sign))


def test_control_the_store_checks_chunk_signatures(fs_stack):
    body = os.urandom(3 * CHUNK)
    status, _, answer = signed_directly(fs_stack, "chunked/control-good", body, stale_chunk=False)
    assert status == 200, answer
    status, _, answer = signed_directly(fs_stack, "chunked/control-stale", body, stale_chunk=True)
    # s3s-fs 0.14 reports a chunk signature mismatch, found mid-stream, as 500 InternalError.
    assert status >= 400, answer
    listed = s3_client(fs_stack.url).list_objects_v2(Bucket="demo", Prefix="chunked/control-stale")
    assert listed.get("Contents", []) == []


def assert_refused_and_absent(target, key: str, status: int, answer: bytes, code: bytes):
    assert status == 400, answer
    assert b"<Code>" + code + b"</Code>" in answer and b"aws-chunked" in answer, answer
    listed = s3_client(target.url).list_objects_v2(Bucket="demo", Prefix=key).get("Contents", [])
    assert listed == [], "the store kept an object from a refused body"


@pytest.mark.parametrize("name,mangle,code", [
    ("bad-hex-size", lambda b: b.replace(b"10000;", b"1z000;", 1), b"InvalidRequest"),
    ("missing-crlf", lambda b: b.replace(b"\r\n1000", b"XX1000", 1), b"InvalidRequest"),
    ("longer-than-declared", lambda b: b.replace(b"10000;", b"0fff0;", 1), b"InvalidRequest"),
    ("ends-early", lambda b: b[:b.rindex(b"0;chunk-signature")], b"IncompleteBody"),
])
def test_malformed_chunk_framing_is_refused_and_nothing_is_stored(fs_stack, name, mangle, code):
    body = os.urandom(3 * CHUNK + 4096)
    framing = mangle(framed(body, CHUNK, False))
    key = f"chunked/malformed-{name}"
    status, _, answer = raw_request(fs_stack.url, "PUT", f"/demo/{key}", headers=headers(len(body), False),
                                    body=framing)
    assert_refused_and_absent(fs_stack, key, status, answer, code)


MINIO_CLIENT = Path(os.environ.get("S3MESH_MINIO_CLIENT_BIN", ROOT / ".tools" / "bin" / "minio-go-client"))


@pytest.mark.parametrize("store", ["s3s-fs", "moto"])
def test_minio_go_chunk_signed_puts_and_multipart_with_signed_trailers(store, fs_stack, stack):
    target = fs_stack if store == "s3s-fs" else stack
    done = subprocess.run([str(MINIO_CLIENT), "-endpoint", target.url.removeprefix("http://"),
                           "-bucket", "demo", "-prefix", f"minio-go-{store}/"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    passed = json.loads(done.stdout)["passed"]
    assert "chunk-signed PUT 1048579 bytes" in passed and "multipart with signed CRC32C trailers" in passed, passed
