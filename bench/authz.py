"""`make bench-authz`: ext-authz's `Authorization/Check` on one core.

ext-authz (release build) is pinned to core 1 and the gRPC load generator (`bench-authz-load`)
to core 0, so the service has one core to itself. Each check is what Envoy sends for an allowed
GET from a caller the identity file knows: identity, policy and SigV4 signing all run. Per
repetition, a fresh ext-authz serves: a closed-loop saturation run (64 checks in flight over 4
HTTP/2 connections) for the maximum rate, then open-loop runs at fixed rates measured from each
check's intended send time. Results: bench/results/authz.json and the "ext-authz checks" section
of BENCHMARKS.md, with bench/results/authz-latency.png.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import RESULTS, write_section  # noqa: E402
from bench.procfs import cpu_seconds  # noqa: E402
from devstack.credentials import write_secret  # noqa: E402
from devstack.processes import Supervisor  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.stack import wait_for  # noqa: E402

AUTHZ = ROOT / "target" / "release" / "s3mesh-ext-authz"
LOAD = ROOT / "target" / "release" / "bench-authz-load"
REPETITIONS = 3
RATES = [1000, 2500, 5000, 10000, 15000]
SATURATE_IN_FLIGHT = 64
DURATION_S, WARMUP_S = 10, 2
GOAL_MAX, GOAL_RATE, GOAL_P99_US = 20000, 5000, 1000

CONFIG = """
callers: {verify: any}
identities:
  - {name: team-a, source_cidrs: [127.0.0.2/32]}
profiles:
  team-a: {credentials_dir: credentials/team-a}
rules:
  - {match: {identities: [team-a]}, buckets: [team-a], operations: [read, write, list], profile: team-a}
"""


def run_load(workdir: Path, target: str, authz_pid: int, **mode) -> dict:
    out = workdir / "load.json"
    flags = []
    for key, value in mode.items():
        flags += [f"--{key}", str(value)]
    before = cpu_seconds(authz_pid)
    subprocess.run(["taskset", "-c", "0", LOAD, "--target", target, "--out", out,
                    "--duration-s", str(DURATION_S), "--warmup-s", str(WARMUP_S), *flags], check=True)
    used = cpu_seconds(authz_pid) - before
    result = json.loads(out.read_text())
    # CPU over the whole run (warm-up included) per check answered over the whole run.
    total = result["checks_per_s"] * (DURATION_S + WARMUP_S)
    result["authz_cpu_us_per_check"] = used * 1e6 / total if total else None
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} checks failed: {result}")
    return result


def repetition(workdir: Path) -> dict:
    write_secret(workdir / "credentials" / "team-a", "AKIDBENCH", "bench-secret-not-a-real-key")
    config = workdir / "ext-authz.yaml"
    config.write_text(CONFIG)
    procs = Supervisor(workdir / "logs")
    port = free_port()
    target = f"127.0.0.1:{port}"
    try:
        proc = procs.spawn("ext-authz", ["taskset", "-c", "1", AUTHZ, "--config", config,
                                         "--listen", target, "--health-listen", f"127.0.0.1:{free_port()}"],
                           env={"RUST_LOG": "info", "PATH": "/usr/bin:/bin"})
        wait_for("ext-authz", lambda: procs.alive("ext-authz") and "serving" in procs.tail("ext-authz"),
                 20, procs.log("ext-authz"))
        saturated = run_load(workdir, target, proc.pid, saturate=SATURATE_IN_FLIGHT)
        rates = [run_load(workdir, target, proc.pid, rate=rate) for rate in RATES]
        return {"saturated": saturated, "rates": rates}
    finally:
        procs.stop()


def plot(runs: list[dict], summary: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("p50_us", "o-"), ("p99_us", "s-")):
        ax.plot([r["rate"] for r in summary["rates"]], [r[key] for r in summary["rates"]], style,
                label=key.replace("_us", "") + " (median of repetitions)")
        for run in runs:
            ax.plot([r["rate"] for r in run["rates"]], [r[key] for r in run["rates"]], ".", color="grey", alpha=0.5)
    ax.axhline(GOAL_P99_US, color="red", linestyle=":", label="p99 goal at 5,000/s")
    ax.set_xlabel("offered checks/s (open loop)")
    ax.set_ylabel("check latency (µs)")
    ax.set_yscale("log")
    ax.set_title(f"ext-authz on one core; saturation {summary['max_checks_per_s']:,.0f} checks/s")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "authz-latency.png", dpi=110)


def main():
    runs = []
    for i in range(REPETITIONS):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(repetition(Path(tmp)))
            print(f"repetition {i + 1}: {runs[-1]['saturated']['checks_per_s']:.0f} checks/s at saturation", flush=True)
    med = statistics.median
    summary = {
        "max_checks_per_s": round(med(r["saturated"]["checks_per_s"] for r in runs)),
        "rates": [{"rate": rate,
                   "p50_us": round(med(r["rates"][i]["p50_us"] for r in runs), 1),
                   "p99_us": round(med(r["rates"][i]["p99_us"] for r in runs), 1)}
                  for i, rate in enumerate(RATES)],
        "authz_cpu_us_per_check": round(med(r["saturated"]["authz_cpu_us_per_check"] for r in runs), 1),
        "repetitions": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "authz.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(runs, summary)
    at_goal = next(r for r in summary["rates"] if r["rate"] == GOAL_RATE)
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = [
        "## ext-authz checks (`make bench-authz`)",
        "",
        f"ext-authz (release) pinned to one core, the gRPC load generator on the other; each check "
        f"identifies the caller, evaluates the policy and signs (SigV4). {REPETITIONS} repetitions, "
        f"a fresh ext-authz each; {DURATION_S} s measured after {WARMUP_S} s warm-up per step; medians "
        f"of the repetitions. Raw: `bench/results/authz.json`.",
        "",
        f"- Saturation ({SATURATE_IN_FLIGHT} checks in flight): **{summary['max_checks_per_s']:,} checks/s** "
        f"(goal ≥ {GOAL_MAX:,}: {met(summary['max_checks_per_s'] >= GOAL_MAX)}); "
        f"{summary['authz_cpu_us_per_check']} µs of ext-authz CPU per check.",
        f"- p99 at {GOAL_RATE:,} checks/s: **{at_goal['p99_us']:.0f} µs** "
        f"(goal < {GOAL_P99_US} µs: {met(at_goal['p99_us'] < GOAL_P99_US)}); the repetitions: "
        + ", ".join(f"{r['rates'][RATES.index(GOAL_RATE)]['p99_us']:.0f}" for r in runs) + " µs.",
        "- Latency is measured by the gRPC client from each check's intended send time, so it "
        "includes the client's own work and the loopback round trip, not only ext-authz's.",
        "",
        "| offered checks/s | p50 µs | p99 µs |",
        "|---:|---:|---:|",
        *[f"| {r['rate']:,} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |" for r in summary["rates"]],
        "",
        "![check latency by offered rate](bench/results/authz-latency.png)",
    ]
    write_section("\n".join(lines) + "\n", "bench-authz")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
