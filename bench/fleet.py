"""`make bench-fleet`: s3mesh where it is deployed, one sidecar per client pod, against the
DNS-pinned clients it replaces and Envoy's own balancers.

A fleet of SIDECARS Envoys (one worker each, as sidecars run), each under its own open-loop GET
load from its own `bench-load` (latency from each request's intended send time), all sharing the
ENDPOINTS endpoints of one `bench-backend` (10 ms service time behind 8 service slots each, so
queueing is real). Each sidecar decides alone: its latency estimates and in-flight counts are its
own, as in a mesh (the native shell shares them across one Envoy's workers, never across Envoys).

Policies, all the product's configuration (`envoy/s3mesh.yaml` without ext_authz, which takes no
part in balancing) with its retry policy (one retry, on another endpoint):
- dns_pinned: each sidecar's cluster holds the one endpoint its client's cached DNS answer
  named. The skew: clients that resolved within one TTL got the same first address, and a
  client keeps it; modelled as a Zipf(1) split of the sidecars over the endpoints (weights
  1, 1/2, 1/3, 1/4: of 8 sidecars, 4 on endpoint 0, 2 on endpoint 1, 1 each on 2 and 3);
- round_robin, least_request: Envoy's balancers over every endpoint;
- s3mesh, s3mesh_native: the filter's hint, wasm and native shells.

Every repetition runs every scenario and policy, the policy order rotated from one repetition to
the next. Results: bench/results/fleet.json (medians, goals), bench/results/fleet-trials.json
(every trial), the plots bench/results/fleet-*.png and the "Fleet" section of BENCHMARKS.md.
"""

import argparse
import json
import math
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backend import start_backend  # noqa: E402
from bench.lb import BIN, envoy_config  # noqa: E402
from bench.procfs import cpu_seconds  # noqa: E402
from bench.report import RESULTS, percentile_bars, write_section  # noqa: E402
from bench.rounds import rotated  # noqa: E402
from devstack.processes import Supervisor  # noqa: E402
from devstack.stack import start_envoy  # noqa: E402

POLICIES = ["dns_pinned", "round_robin", "least_request", "s3mesh", "s3mesh_native"]
SUBJECTS = ["s3mesh", "s3mesh_native"]
SIDECARS, ENDPOINTS, SERVICE_MS, SLOTS = 8, 4, 10.0, 8
#: Requests/s over the whole fleet: 56% of the endpoints' 3,200/s, so the fleet has room, but
#: the four sidecars DNS pins to endpoint 0 send it 900/s, over its 800/s: overloaded by skew.
TOTAL_RATE = 1800.0
PINNED = [0, 0, 0, 0, 1, 1, 2, 3]
WARMUP_S = 2.0
FOREVER = 1e9
EVEN = [TOTAL_RATE / SIDECARS] * SIDECARS
#: Sidecar 0 carries a third of the traffic, the other seven share the rest.
UNEVEN = [TOTAL_RATE / 3] + [TOTAL_RATE * 2 / 3 / (SIDECARS - 1)] * (SIDECARS - 1)
DOWN_S, DOWN_EVERY_S = 3.0, 4.0

#: name -> (description, duration s, scripts by endpoint, rate per sidecar)
SCENARIOS = {
    "healthy": ("every endpoint healthy", 12, {}, EVEN),
    "slow": ("endpoint 0 five times slower", 12,
             {0: {"slow": [{"from_s": 0, "to_s": FOREVER, "service_ms": 5 * SERVICE_MS}]}}, EVEN),
    "stall": ("endpoint 0 stalls 200 ms every 2 s", 12, {0: {"stall": {"every_ms": 2000, "for_ms": 200}}}, EVEN),
    "rolling": (f"rolling restart: each endpoint down {DOWN_S:.0f} s in turn (port closed, connections cut)",
                4 + ENDPOINTS * DOWN_EVERY_S,
                {i: {"down": [{"from_s": 3 + i * DOWN_EVERY_S, "to_s": 3 + i * DOWN_EVERY_S + DOWN_S}]}
                 for i in range(ENDPOINTS)}, EVEN),
    "uneven": ("sidecar 0 carries a third of the traffic", 12, {}, UNEVEN),
}


def sidecar_config(policy: str, endpoints: list[str], sidecar: int) -> dict:
    """Sidecar `sidecar`'s Envoy configuration under `policy`."""
    if policy == "dns_pinned":
        return envoy_config("round_robin", [endpoints[PINNED[sidecar]]], retry=True)
    return envoy_config(policy, endpoints, retry=True)


def start_fleet(procs: Supervisor, workdir: Path, policy: str, endpoints: list[str]) -> list[str]:
    """Starts every sidecar (at once) and returns their listeners."""
    def one(i):
        path = workdir / f"envoy-{i}.json"
        path.write_text(json.dumps(sidecar_config(policy, endpoints, i)))
        return start_envoy(procs, path, workdir, concurrency=1, name=f"envoy-{i}", native_dir=BIN)[1]
    with ThreadPoolExecutor(SIDECARS) as pool:
        return list(pool.map(one, range(SIDECARS)))


def trial(workdir: Path, scenario: str, policy: str) -> dict:
    _, duration, scripts, rates = SCENARIOS[scenario]
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Supervisor(workdir / "logs")
    try:
        spec = [{"service_ms": SERVICE_MS, "slots": SLOTS} | scripts.get(i, {}) for i in range(ENDPOINTS)]
        endpoints = start_backend(procs, workdir, spec)
        listeners = start_fleet(procs, workdir, policy, endpoints)
        pids = [procs.procs[f"envoy-{i}"].pid for i in range(SIDECARS)]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        loads = []
        for i, (listener, rate) in enumerate(zip(listeners, rates)):
            control = ["--control", endpoints[0]] if i == 0 else []  # starts the backend's clock
            loads.append(subprocess.Popen(
                [BIN / "bench-load", "--target", listener, "--path", "/bench/object", "--rate", str(rate),
                 "--duration-s", str(duration), "--warmup-s", str(WARMUP_S), "--out", workdir / f"load-{i}.json",
                 "--raw", *control], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for load in loads:
            _, err = load.communicate(timeout=duration + 60)
            if load.returncode:
                raise RuntimeError(f"bench-load failed: {err.decode(errors='replace')[-2000:]}")
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        procs.check_all()
    finally:
        procs.stop()
    per_sidecar = [json.loads((workdir / f"load-{i}.json").read_text())["requests"] for i in range(SIDECARS)]
    return summarize(per_sidecar, duration, cpu)


def percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of `ordered` (nearest rank, as `bench-load` computes it); 0 when empty."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def summarize(per_sidecar: list[list], duration: float, envoy_cpu_s: float) -> dict:
    """Fleet and per-sidecar figures from every request `[intended s, ms, status, endpoint]`."""
    measured = [[r for r in reqs if r[0] >= WARMUP_S] for reqs in per_sidecar]
    every = [r for reqs in measured for r in reqs]
    latencies = sorted(r[1] for r in every)
    errors = sum(1 for r in every if not 200 <= r[2] < 400)
    by_endpoint = [sum(1 for r in every if r[3] == e) for e in range(ENDPOINTS)]
    served = max(1, sum(by_endpoint))
    sidecar_p99 = [percentile(sorted(r[1] for r in reqs), 0.99) for reqs in measured]
    fleet_p99 = percentile(latencies, 0.99)
    # Per second of the whole run (warm-up included): requests by serving endpoint, and errors.
    by_second = [[0] * ENDPOINTS for _ in range(int(duration))]
    sent, failed = [0] * len(by_second), [0] * len(by_second)
    for t, _, status, endpoint in (r for reqs in per_sidecar for r in reqs):
        second = int(t)
        if second < len(by_second):
            sent[second] += 1
            failed[second] += not 200 <= status < 400
            if 0 <= endpoint < ENDPOINTS:
                by_second[second][endpoint] += 1
    return {
        "p50_ms": percentile(latencies, 0.50), "p99_ms": fleet_p99, "p999_ms": percentile(latencies, 0.999),
        "error_rate": errors / max(1, len(every)), "requests": len(every),
        "share": [n / served for n in by_endpoint],
        "busiest_share_vs_fair": max(by_endpoint) / served * ENDPOINTS,
        "sidecar_p99_ms": sidecar_p99,
        "worst_sidecar_p99_vs_fleet": max(sidecar_p99) / fleet_p99 if fleet_p99 else 1.0,
        "envoy_cpu_us_per_req": envoy_cpu_s * 1e6 / max(1, sum(len(reqs) for reqs in per_sidecar)),
        "share_by_second": [[c / max(1, sum(counts)) for c in counts] for counts in by_second],
        "errors_by_second": [f / max(1, n) for f, n in zip(failed, sent)],
    }


METRICS = ["p50_ms", "p99_ms", "p999_ms", "error_rate", "busiest_share_vs_fair", "worst_sidecar_p99_vs_fleet",
           "envoy_cpu_us_per_req"]


def medians(trials: dict) -> dict:
    """Per scenario and policy, the median of every metric (and of each endpoint's share) over
    the repetitions."""
    def summary(runs):
        out = {m: statistics.median(t[m] for t in runs) for m in METRICS}
        out["share"] = [statistics.median(t["share"][e] for t in runs) for e in range(ENDPOINTS)]
        return out | {"repetitions": len(runs)}
    return {s: {p: summary(runs) for p, runs in by_policy.items() if runs} for s, by_policy in trials.items()}


def goals(med: dict, subject: str) -> list[tuple[str, float, str, bool]]:
    """(goal, measured, target, met) for `subject`."""
    out = []

    def ratio(scenario, metric, other):
        a, b = med[scenario][subject][metric], med[scenario][other][metric]
        return a / b if b else float("inf") if a else 1.0

    for scenario in ("healthy", "uneven"):
        if scenario in med:
            r = ratio(scenario, "p99_ms", "dns_pinned")
            out.append((f"{scenario}: fleet p99 vs dns_pinned", r, "<= 0.2x", r <= 0.2))
            b = med[scenario][subject]["busiest_share_vs_fair"]
            out.append((f"{scenario}: busiest endpoint's share vs a fair share", b, "<= 1.3x", b <= 1.3))
    if "slow" in med:
        r = ratio("slow", "p99_ms", "least_request")
        out.append(("slow: fleet p99 vs least_request", r, "<= 0.5x", r <= 0.5))
        s = med["slow"][subject]["share"][0]
        out.append(("slow: the slow endpoint's share", s, "<= 5%", s <= 0.05))
    for scenario in ("healthy", "slow", "stall", "uneven"):
        if scenario in med:
            w = med[scenario][subject]["worst_sidecar_p99_vs_fleet"]
            out.append((f"{scenario}: worst sidecar's p99 vs the fleet's", w, "<= 1.5x", w <= 1.5))
    if "rolling" in med:
        r = ratio("rolling", "error_rate", "least_request")
        out.append(("rolling restart: errors vs least_request (one retry)", r, "<= 0.25x", r <= 0.25))
    return out


def plot(trials: dict, med: dict, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, policies = list(med), [p for p in POLICIES if any(p in med[s] for s in med)]
    fig, axes = plt.subplots(len(policies), len(scenarios), figsize=(3.2 * len(scenarios), 2.2 * len(policies)),
                             sharey=True, squeeze=False)
    for row, policy in zip(axes, policies):
        for ax, scenario in zip(row, scenarios):
            runs = trials[scenario].get(policy, [])
            if not runs:
                continue
            length = min(len(t["share_by_second"]) for t in runs)
            for e in range(ENDPOINTS):
                ax.plot(range(length), [statistics.mean(t["share_by_second"][s][e] for t in runs) * 100
                                        for s in range(length)], label=f"endpoint {e}")
            ax.set_title(f"{policy}, {scenario}", fontsize=8)
        row[0].set_ylabel("share (%)")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "fleet-share.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.4 * len(scenarios), 3.4), sharey=True, squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        percentile_bars(ax, {p: med[scenario][p] for p in policies if p in med[scenario]})
        ax.set_title(scenario, fontsize=9)
    axes[0, 0].set_ylabel("fleet latency from intended send (ms, log)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fleet-latency.png", dpi=90)
    plt.close(fig)


def markdown(med: dict, met: dict, reps: int, elapsed_s: float) -> str:
    subjects = list(met)
    lines = [
        "## Fleet (`make bench-fleet`)",
        "",
        f"{SIDECARS} sidecar Envoys (one worker each), each under its own open-loop GET load, sharing "
        f"{ENDPOINTS} endpoints (10 ms service time, {SLOTS} slots each: 3,200 requests/s capacity); "
        f"{TOTAL_RATE:.0f} requests/s over the fleet ({TOTAL_RATE / SIDECARS:.0f}/s per sidecar, or a third "
        f"on sidecar 0 in `uneven`), latency from the intended send time; medians of {reps} repetitions, "
        f"policies interleaved (order rotated per repetition). `dns_pinned`: each sidecar's cluster holds "
        f"only the endpoint its client's cached DNS answer named, Zipf(1)-skewed: sidecars per endpoint "
        f"{[PINNED.count(e) for e in range(ENDPOINTS)]}. Run took {elapsed_s / 60:.0f} min. Raw trials: "
        "`bench/results/fleet-trials.json`; medians: `bench/results/fleet.json`.",
        "",
        "### Goals",
        "",
        "| goal | target | " + " | ".join(subjects) + " |",
        "|---|---|" + "---|" * len(subjects),
    ]
    for i, (text, _, target, _) in enumerate(met[subjects[0]]):
        cells = []
        for subject in subjects:
            _, value, shown_target, ok = met[subject][i]
            shown = f"{value * 100:.2f}%" if "%" in shown_target else f"{value:.3f}x"
            cells.append(f"{shown} {'met' if ok else '**missed**'}")
        lines.append(f"| {text} | {target} | " + " | ".join(cells) + " |")
    lines += ["", "### Medians", "",
              "| scenario | policy | p50 ms | p99 ms | p99.9 ms | errors | share per endpoint | busiest vs fair "
              "| worst sidecar p99 vs fleet | Envoy CPU µs/req |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for scenario, by_policy in med.items():
        for policy, m in by_policy.items():
            share = " / ".join(f"{s * 100:.1f}" for s in m["share"])
            lines.append(f"| {scenario} | {policy} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['p999_ms']:.2f} | "
                         f"{m['error_rate'] * 100:.3f}% | {share} % | {m['busiest_share_vs_fair']:.2f}x | "
                         f"{m['worst_sidecar_p99_vs_fleet']:.2f}x | {m['envoy_cpu_us_per_req']:.1f} |")
    lines += ["", "Scenarios: " + "; ".join(f"**{k}** {v[0]}" for k, v in SCENARIOS.items() if k in med) + ".",
              "", "![share per endpoint over time, per policy and scenario](bench/results/fleet-share.png)",
              "", "![fleet latency percentiles per policy](bench/results/fleet-latency.png)", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--policies", nargs="*", default=POLICIES, choices=POLICIES)
    parser.add_argument("--quick", action="store_true", help="one repetition, prints its report, writes nothing "
                        "under bench/results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work" / "fleet")
    args = parser.parse_args()
    # SIGTERM must unwind like Ctrl-C so that every trial's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reps = 1 if args.quick else args.repetitions
    trials = {s: {p: [] for p in args.policies} for s in args.scenarios}
    started = time.monotonic()
    for rep in range(reps):
        order = rotated(args.policies, rep)
        for scenario in args.scenarios:
            for policy in order:
                result = trial(args.workdir / f"{scenario}-{policy}-{rep}", scenario, policy)
                trials[scenario][policy].append(result)
                print(f"rep {rep} {scenario:8} {policy:14} p99 {result['p99_ms']:8.2f} ms  errors "
                      f"{result['error_rate'] * 100:6.3f}%  share {[round(s * 100, 1) for s in result['share']]}  "
                      f"worst sidecar {result['worst_sidecar_p99_vs_fleet']:.2f}x  cpu "
                      f"{result['envoy_cpu_us_per_req']:.1f} µs/req", flush=True)
    med = medians(trials)
    full = set(args.policies) == set(POLICIES)
    met = {x: goals(med, x) for x in SUBJECTS if x in args.policies} if full else {}
    for subject, results in met.items():
        for text, value, target, ok in results:
            print(f"{subject:13} {'met   ' if ok else 'MISSED'} {text}: {value:.4f} (target {target})")
    if args.quick or not full:
        print(json.dumps(med, indent=1))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps({"scenarios": med, "goals": met}, indent=2))
    (RESULTS / "fleet-trials.json").write_text(json.dumps({"scenarios": trials}))
    plot(trials, med, RESULTS)
    write_section(markdown(med, met, reps, time.monotonic() - started), "bench-fleet")


if __name__ == "__main__":
    main()
