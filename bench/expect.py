"""`make bench-expect`: `Expect: 100-continue` uploads through s3mesh with Envoy answering
`100 Continue` itself (`proxy_100_continue: false`, Envoy's default) and with the expectation
passed to the store (`proxy_100_continue: true`, what s3mesh ships).

Two full local stacks (store, ext-authz, Envoy) side by side, the same requests alternating
between them. The client does what botocore does: it sends the headers, waits up to 1 s for
`100 Continue` or a final status, then sends the body (or, on a final status, stops). Measured:
allowed 4 MiB uploads (latency to the final response) and uploads ext_authz denies (body
bytes the client sent before its answer, and time to the answer). Results go to
bench/results/expect.json and the "Expect: 100-continue" section of BENCHMARKS.md.
"""

import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import RESULTS, write_section  # noqa: E402
from devstack.stack import Stack, connection_manager, start_envoy  # noqa: E402

BODY = b"x" * (4 * 1024 * 1024)
ROUNDS = 30
WAIT_FOR_100_S = 1.0


def read_status(sock) -> tuple[int, bytes]:
    """Reads one response head; returns its status and whatever followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return int(head.split(b" ", 2)[1]), rest


def upload(url: str, path: str, source_ip: str) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30, source_address=(source_ip, 0))
    try:
        start = time.perf_counter()
        sock.sendall((f"PUT {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(BODY)}\r\n"
                      f"expect: 100-continue\r\ncontent-type: application/octet-stream\r\n\r\n").encode())
        sock.settimeout(WAIT_FOR_100_S)
        sent, got_100 = 0, False
        try:
            status, _ = read_status(sock)
        except socket.timeout:
            status = None
        sock.settimeout(30)
        if status == 100:
            got_100 = True
            status = None
        first_answer_s = time.perf_counter() - start
        if status is None:
            view = memoryview(BODY)
            try:
                while sent < len(BODY):
                    sent += sock.send(view[sent:sent + 65536])
                status, _ = read_status(sock)
            except (ConnectionResetError, BrokenPipeError):
                # The proxy answered and closed while the body was still being sent; a 403 may
                # be waiting in the receive buffer, or lost to the reset.
                try:
                    status, _ = read_status(sock)
                except OSError:
                    status = "reset"
        return {"status": status, "got_100": got_100, "body_bytes_sent": sent,
                "latency_ms": (time.perf_counter() - start) * 1000, "first_answer_ms": first_answer_s * 1000}
    finally:
        sock.close()


def local_100(stack: Stack, workdir: Path) -> str:
    """A second Envoy in front of the same ext-authz and store, answering 100 itself."""
    config = yaml.safe_load((stack.workdir / "envoy.yaml").read_text())
    hcm = connection_manager(config)
    hcm["proxy_100_continue"] = False
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = 0
    path = workdir / "envoy-local-100.json"
    path.write_text(json.dumps(config))
    _, address = start_envoy(stack.processes, path, workdir, concurrency=2, name="envoy-local-100")
    return f"http://{address}"


def summary(runs: list[dict]) -> dict:
    lat = sorted(r["latency_ms"] for r in runs)
    return {
        "requests": len(runs),
        "statuses": sorted({str(r["status"]) for r in runs}),
        "got_100_share": sum(r["got_100"] for r in runs) / len(runs),
        "p50_ms": statistics.median(lat),
        "p90_ms": lat[int(0.9 * (len(lat) - 1))],
        "median_body_bytes_sent": statistics.median(r["body_bytes_sent"] for r in runs),
    }


def main():
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp)) as stack:
        urls = {"proxy_100_continue": stack.url, "envoy_answers_100": local_100(stack, Path(tmp))}
        runs = {(cfg, case): [] for cfg in urls for case in ("allowed", "denied")}
        for i in range(ROUNDS):
            for cfg, url in (urls.items() if i % 2 == 0 else reversed(list(urls.items()))):
                runs[(cfg, "allowed")].append(upload(url, f"/demo/expect-{i}", "127.0.0.1"))
                runs[(cfg, "denied")].append(upload(url, f"/demo/expect-{i}", "127.0.0.2"))
    results = {cfg: {case: summary(runs[(cfg, case)]) for case in ("allowed", "denied")} for cfg in urls}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "expect.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    lines = ["## Expect: 100-continue (`make bench-expect`)", "",
             f"4 MiB `PUT` with `Expect: 100-continue` through the full local stack (ext-authz, moto store), "
             f"{ROUNDS} of each, the two Envoy settings alternating; the client waits up to 1 s for `100` like "
             "botocore. Denied = an identity without write access to the bucket (ext_authz answers 403).", "",
             "| setting | case | statuses | got 100 | p50 ms | p90 ms | body bytes sent (median) |",
             "|---|---|---|---|---|---|---|"]
    for cfg, by_case in results.items():
        for case, r in by_case.items():
            lines.append(f"| {cfg} | {case} | {r['statuses']} | {r['got_100_share'] * 100:.0f}% | {r['p50_ms']:.1f} | "
                         f"{r['p90_ms']:.1f} | {r['median_body_bytes_sent']:.0f} |")
    write_section("\n".join(lines) + "\n", "bench-expect")


if __name__ == "__main__":
    main()
