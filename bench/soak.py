"""`make soak`: the full local stack (moto store on 3 endpoints, ext-authz, Envoy with both wasm
filters) under a fixed-rate, realistic mix for 10 minutes, watching for errors and for growth in
memory, file descriptors and connections.

Open loop: request `i` starts at `start + i/RATE` on a pool of client threads, whatever happened
to earlier ones. The mix: 70% GET of small objects (1-64 KiB), 15% PUT of mixed sizes (1 KiB to
1 MiB, over a bounded key set so the store does not grow without end), 10% LIST, 5% multipart
(3 parts of 5 MiB on a key of its own, read back and compared, then deleted). Every 5 s: resident memory
and open file descriptors of Envoy and ext-authz, and Envoy's open downstream and upstream
connections. Growth is measured from the end of the warm-up (2 min) to the end.

Results: bench/results/soak.json, bench/results/soak.png and the "Soak" section of
BENCHMARKS.md.
"""

import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.report import RESULTS, write_section  # noqa: E402
from bench.procfs import open_fds, rss_mb  # noqa: E402
from conftest import s3_client  # noqa: E402
from devstack.stack import Stack  # noqa: E402

DURATION_S = float(os.environ.get("SOAK_SECONDS", 600))
WARMUP_S = min(120.0, DURATION_S / 5)
RATE = 20.0
SAMPLE_EVERY_S = 5.0
KEYS = 200
MIB = 1024 * 1024


class Mix:
    """One request of the mix; returns what happened, as a short label."""

    def __init__(self, stack):
        self.s3 = s3_client(stack.url)
        self.sizes = {}
        self.lock = threading.Lock()

    def get(self, rng):
        key = f"soak/{rng.randrange(KEYS)}"
        with self.lock:
            size = self.sizes.get(key)
        if size is None:
            return self.put(rng, key)
        body = self.s3.get_object(Bucket="demo", Key=key)["Body"].read()
        return "get" if len(body) > 0 else "get-empty"

    def put(self, rng, key=None):
        key = key or f"soak/{rng.randrange(KEYS)}"
        size = rng.choice([1024, 16 * 1024, 64 * 1024, 256 * 1024, MIB])
        self.s3.put_object(Bucket="demo", Key=key, Body=os.urandom(size))
        with self.lock:
            self.sizes[key] = size
        return "put"

    def list(self, rng):
        self.s3.list_objects_v2(Bucket="demo", Prefix=f"soak/{rng.randrange(10)}", MaxKeys=100)
        return "list"

    def multipart(self, rng, i):
        # A key of its own: two uploads completing on one key would read back each other's bytes.
        key = f"soak-mpu/{i}"
        parts = [os.urandom(5 * MIB) for _ in range(3)]
        upload = self.s3.create_multipart_upload(Bucket="demo", Key=key)["UploadId"]
        etags = [self.s3.upload_part(Bucket="demo", Key=key, UploadId=upload, PartNumber=i + 1, Body=p)["ETag"]
                 for i, p in enumerate(parts)]
        self.s3.complete_multipart_upload(Bucket="demo", Key=key, UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        got = self.s3.get_object(Bucket="demo", Key=key, ChecksumMode="DISABLED")["Body"].read()
        self.s3.delete_object(Bucket="demo", Key=key)
        if hashlib.sha256(got).digest() != hashlib.sha256(b"".join(parts)).digest():
            return "multipart-MISMATCH"
        return "multipart"

    def one(self, i: int) -> str:
        rng = random.Random(i)
        roll = rng.random()
        try:
            if roll < 0.70:
                return self.get(rng)
            if roll < 0.85:
                return self.put(rng)
            if roll < 0.95:
                return self.list(rng)
            return self.multipart(rng, i)
        except Exception as error:  # noqa: BLE001 - every failure is counted by its kind
            return f"error:{type(error).__name__}:{str(error)[:80]}"


def envoy_connections(stack) -> dict:
    stats = stack.stats()
    return {"downstream_active": stats.get("http.s3mesh.downstream_cx_active", 0),
            "upstream_active": stats.get("cluster.s3.upstream_cx_active", 0),
            "authz_upstream_active": stats.get("cluster.s3mesh_ext_authz.upstream_cx_active", 0)}


def main():
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp) / "stack") as stack:
        envoy = stack.processes.procs["envoy"].pid
        authz = stack.processes.procs["ext-authz"].pid
        mix = Mix(stack)
        samples, outcomes, lateness = [], Counter(), []
        done = threading.Event()

        def sample():
            start = time.monotonic()
            while not done.is_set():
                samples.append({"t": round(time.monotonic() - start, 1),
                                "envoy_rss_mb": round(rss_mb(envoy), 1), "authz_rss_mb": round(rss_mb(authz), 1),
                                "envoy_fds": open_fds(envoy), "authz_fds": open_fds(authz), **envoy_connections(stack)})
                done.wait(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            futures, i = [], 0
            while (due := start + i / RATE) < start + DURATION_S:
                time.sleep(max(0.0, due - time.monotonic()))
                lateness.append(time.monotonic() - due)
                futures.append(pool.submit(mix.one, i))
                i += 1
            for f in futures:
                outcomes[f.result()] += 1
        done.set()
        sampler.join()
    after_warmup = [s for s in samples if s["t"] >= WARMUP_S] or samples
    growth = {k: round(after_warmup[-1][k] - after_warmup[0][k], 1)
              for k in ("envoy_rss_mb", "authz_rss_mb", "envoy_fds", "authz_fds")}
    errors = {k: v for k, v in outcomes.items() if k.startswith("error") or "MISMATCH" in k}
    result = {"duration_s": DURATION_S, "rate": RATE, "requests": sum(outcomes.values()),
              "outcomes": dict(outcomes), "errors": errors, "growth_after_warmup": growth,
              "send_lateness_p99_ms": round(sorted(lateness)[int(len(lateness) * 0.99)] * 1000, 1),
              "samples": samples}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(samples)
    first, last = after_warmup[0], after_warmup[-1]
    lines = [
        "## Soak (`make soak`)",
        "",
        f"The full local stack for {DURATION_S / 60:.0f} min at {RATE:.0f} requests/s, open loop: 70% GET, "
        f"15% PUT (1 KiB-1 MiB), 10% LIST, 5% multipart (3 × 5 MiB, read back and compared). "
        f"Raw: `bench/results/soak.json`.",
        "",
        f"- Requests: {result['requests']:,}; unexpected errors: **{sum(errors.values())}**"
        + (f" ({errors})" if errors else "") + f"; outcomes: {dict(outcomes)}.",
        f"- Memory after the {WARMUP_S:.0f} s warm-up: Envoy {first['envoy_rss_mb']:.0f} → {last['envoy_rss_mb']:.0f} MB "
        f"({growth['envoy_rss_mb']:+.1f} MB), ext-authz {first['authz_rss_mb']:.0f} → {last['authz_rss_mb']:.0f} MB "
        f"({growth['authz_rss_mb']:+.1f} MB).",
        f"- File descriptors after warm-up: Envoy {first['envoy_fds']} → {last['envoy_fds']} "
        f"({growth['envoy_fds']:+.0f}), ext-authz {first['authz_fds']} → {last['authz_fds']} ({growth['authz_fds']:+.0f}); "
        f"Envoy connections at the end: {last['downstream_active']} downstream, {last['upstream_active']} to the "
        f"store, {last['authz_upstream_active']} to ext-authz.",
        f"- Median Envoy RSS over the run {statistics.median(s['envoy_rss_mb'] for s in samples):.0f} MB; "
        f"the client sent 99% of requests within {result['send_lateness_p99_ms']} ms of their due time.",
        "",
        "![memory and descriptors over the soak](bench/results/soak.png)",
    ]
    write_section("\n".join(lines) + "\n", "soak")
    print("\n".join(lines))


def plot(samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, (mem, fd) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    mem.plot(t, [s["envoy_rss_mb"] for s in samples], label="Envoy RSS")
    mem.plot(t, [s["authz_rss_mb"] for s in samples], label="ext-authz RSS")
    mem.set_ylabel("MB")
    mem.axvline(WARMUP_S / 60, color="grey", linestyle=":")
    mem.legend()
    fd.plot(t, [s["envoy_fds"] for s in samples], label="Envoy fds")
    fd.plot(t, [s["authz_fds"] for s in samples], label="ext-authz fds")
    fd.plot(t, [s["downstream_active"] for s in samples], label="Envoy downstream connections")
    fd.set_xlabel("minutes")
    fd.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=110)


if __name__ == "__main__":
    main()
