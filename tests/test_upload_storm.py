"""Many large uploads at once through one Envoy (issue 18, "under pressure"): every object arrives
intact, and Envoy's memory stays within what it may hold per upload, whatever the object size.

What Envoy may hold per upload in flight, each at most its buffer limit
(`per_connection_buffer_limit_bytes`, 1 MiB by Envoy's default; flow control pauses the side
that fills it): the client connection's read buffer, the store connection's write buffer, and
the router's copy of the body's start, kept for a retry until it outgrows the limit; and, for a
chunk-signed upload, the one chunk the `post` filter's re-signer holds. So for N uploads the
bound is N × (3 MiB + a chunk) plus a fixed allowance for the allocator and the filter's
runtime, never the objects' size.

The store is s3s-fs (it verifies every chunk signature the filter writes, and keeps objects on
disk, not in memory). Half the uploads are `UNSIGNED-PAYLOAD`, half chunk-signed (`STREAMING-
AWS4-HMAC-SHA256-PAYLOAD`, every fourth with a signed trailer), streamed from a generator so
the test itself holds no copy of each object; every object is read back through s3mesh and its
SHA-256 compared.

`make test-storm` runs it at full size (200 uploads of 64 MiB on each shell: 12.8 GiB through
Envoy and onto the disk, each way); `make test` runs the same test at 32 uploads of 16 MiB
(`S3MESH_STORM_UPLOADS`, `S3MESH_STORM_MIB`).
"""

import base64
import hashlib
import http.client
import json
import os
import random
import shutil
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.procfs import rss_mb
from conftest import LOCAL_DEV
from devstack.stack import FILTER_SHELLS, Stack

UPLOADS = int(os.environ.get("S3MESH_STORM_UPLOADS", 32))
MIB = 1024 * 1024
SIZE = int(os.environ.get("S3MESH_STORM_MIB", 16)) * MIB
CHUNK = 64 * 1024
#: Envoy's default `per_connection_buffer_limit_bytes`: the limit of each of an upload's buffers.
BUFFER_LIMIT = MIB
#: Buffers per upload: client connection, store connection, the router's retry copy.
BUFFERS = 3
#: The allocator's and the filter runtime's own growth under load, whatever the uploads.
FIXED_ALLOWANCE_MB = 128
PLACEHOLDER = "0" * 64
RESULTS = Path(__file__).resolve().parent / "results"


class Objects:
    """Object `i`'s bytes: one random buffer read from offset `i`-dependent onward, wrapping
    around. Every object is distinct at every offset, so bytes from another upload mixed in
    change its digest; no object is ever held whole."""

    def __init__(self, size: int, seed: int):
        rng = random.Random(seed)
        base = rng.randbytes(size)
        self.doubled = memoryview(base + base)
        self.size = size
        self.offsets = [rng.randrange(size) for _ in range(UPLOADS)]

    def body(self, i: int) -> memoryview:
        start = self.offsets[i]
        return self.doubled[start:start + self.size]


def chunk_header(size: int) -> bytes:
    """A chunk's size line, with a placeholder signature that s3mesh replaces (the client holds
    no key)."""
    return f"{size:x};chunk-signature={PLACEHOLDER}\r\n".encode()


def aws_chunked(body: memoryview, trailer: bool):
    """`body` framed as aws-chunked: (its length, its pieces one chunk at a time)."""
    sizes = [min(CHUNK, len(body) - at) for at in range(0, len(body), CHUNK)]
    end = b"\r\n"
    if trailer:
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        end = f"x-amz-checksum-crc32:{crc}\r\nx-amz-trailer-signature:{PLACEHOLDER}\r\n\r\n".encode()
    length = sum(len(chunk_header(n)) + n + 2 for n in sizes) + len(chunk_header(0)) + len(end)

    def pieces():
        for at, n in zip(range(0, len(body), CHUNK), sizes):
            yield chunk_header(n) + body[at:at + n] + b"\r\n"
        yield chunk_header(0) + end

    return length, pieces()


def upload(url: str, key: str, body: memoryview, mode: str) -> int:
    """PUTs `body` in `mode` (`unsigned`, `chunked`, `chunked-trailer`); the response status."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600, source_address=(LOCAL_DEV, 0))
    try:
        conn.putrequest("PUT", f"/demo/{key}")
        if mode == "unsigned":
            conn.putheader("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            length = len(body)
            pieces = (body[at:at + MIB] for at in range(0, len(body), MIB))
        else:
            trailer = mode == "chunked-trailer"
            length, pieces = aws_chunked(body, trailer)
            conn.putheader("x-amz-content-sha256",
                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else ""))
            conn.putheader("content-encoding", "aws-chunked")
            conn.putheader("x-amz-decoded-content-length", str(len(body)))
            if trailer:
                conn.putheader("x-amz-trailer", "x-amz-checksum-crc32")
        conn.putheader("content-length", str(length))
        conn.endheaders()
        for piece in pieces:
            conn.send(piece)
        response = conn.getresponse()
        answer = response.read()
        assert response.status == 200, (key, mode, response.status, answer[:300])
        return response.status
    finally:
        conn.close()


def read_back_digest(url: str, key: str) -> tuple[int, str]:
    """GETs `key` through s3mesh: (bytes received, SHA-256 hex), streamed."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600, source_address=(LOCAL_DEV, 0))
    try:
        conn.request("GET", f"/demo/{key}")
        response = conn.getresponse()
        assert response.status == 200, (key, response.status)
        digest, received = hashlib.sha256(), 0
        while piece := response.read(MIB):
            digest.update(piece)
            received += len(piece)
        return received, digest.hexdigest()
    finally:
        conn.close()


class PeakRss:
    """Samples a process's resident memory every 50 ms until stopped; keeps the peak."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, rss_mb(pid), threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def end(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak


MODES = ["unsigned", "chunked", "unsigned", "chunked-trailer"]


@pytest.mark.parametrize("shell", FILTER_SHELLS)
def test_concurrent_large_uploads_arrive_intact_within_envoys_memory_bound(tmp_path, shell):
    objects = Objects(SIZE, seed=18)
    with Stack(tmp_path, backend="s3s-fs", shell=shell) as stack:
        envoy = stack.processes.procs["envoy"].pid
        upload(stack.url, "warm-up", objects.body(0)[:MIB], "chunked")  # a grant, connections
        before = rss_mb(envoy)
        peak = PeakRss(envoy)
        started = time.monotonic()
        with ThreadPoolExecutor(UPLOADS) as pool:
            statuses = list(pool.map(lambda i: upload(stack.url, f"storm/{i}", objects.body(i), MODES[i % 4]),
                                     range(UPLOADS)))
        upload_s = time.monotonic() - started
        peak_mb = peak.end()
        assert statuses == [200] * UPLOADS
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            read = list(pool.map(lambda i: read_back_digest(stack.url, f"storm/{i}"), range(UPLOADS)))
        read_s = time.monotonic() - started
    shutil.rmtree(tmp_path / "s3s-fs")  # up to 12.8 GiB; pytest keeps its last temporary dirs
    expected = [(SIZE, hashlib.sha256(objects.body(i)).hexdigest()) for i in range(UPLOADS)]
    bad = [i for i in range(UPLOADS) if read[i] != expected[i]]
    assert not bad, f"objects not intact: {bad[:10]} of {UPLOADS}"
    growth = peak_mb - before
    bound = UPLOADS * (BUFFERS * BUFFER_LIMIT + CHUNK) / MIB + FIXED_ALLOWANCE_MB
    result = {"shell": shell, "uploads": UPLOADS, "object_mib": SIZE // MIB, "chunk_kib": CHUNK // 1024,
              "upload_s": round(upload_s, 1), "read_back_s": round(read_s, 1),
              "upload_mb_per_s": round(UPLOADS * SIZE / MIB / upload_s),
              "envoy_rss_before_mb": round(before), "envoy_rss_peak_mb": round(peak_mb),
              "envoy_growth_mb": round(growth), "bound_mb": round(bound)}
    print(json.dumps(result))
    if UPLOADS >= 200:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"upload-storm-{shell}.json").write_text(json.dumps(result, indent=1) + "\n")
    assert growth <= bound, result
