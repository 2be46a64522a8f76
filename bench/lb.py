"""`make bench-lb`: s3mesh's endpoint selection against Envoy's own balancers.

Four endpoints of `bench-backend` (service time a 10 ms sleep behind 8 service slots each, so
queueing is real), open-loop GET load at a fixed rate from `bench-load` (latency measured from
each request's intended send time), one fresh Envoy per trial (one worker). Configurations,
all derived from the product's `envoy/s3mesh.yaml` without ext_authz (it does not take part in
balancing and is measured by `make bench-overhead`):

- round_robin, least_request: Envoy's balancers, no wasm;
- s3mesh: both wasm filter instances, override_host with least_request fallback (as shipped);
- noop_least_request: both wasm filter instances loaded but the hint switched off
  (`unhinted_share: 1.0`) on a least_request cluster: the cost of the wasm VMs without the
  balancing decision.

Every repetition runs every scenario for every configuration, rotating the configuration order
from one repetition to the next. Results: bench/results/lb.json (medians over repetitions),
bench/results/lb-trials.json (every trial), the plots bench/results/lb-*.png and the "Load
balancing" section of BENCHMARKS.md.
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backend import start_backend  # noqa: E402
from bench.report import RESULTS, write_section  # noqa: E402
from bench.procfs import cpu_seconds, rss_mb  # noqa: E402
from devstack.processes import Supervisor  # noqa: E402
from devstack.stack import EXT_AUTHZ_FILTER, WASM, connection_manager, render_envoy, start_envoy  # noqa: E402

BIN = ROOT / "target" / "release"
CONFIGS = ["round_robin", "least_request", "s3mesh", "noop_least_request"]
ENDPOINTS, SERVICE_MS, SLOTS = 4, 10.0, 8
RATE = 1000.0  # requests/s: about 31% of the healthy fleet's 3,200/s capacity
WARMUP_S = 2.0
FOREVER = 1e9

#: name -> (description, duration s, what endpoint 0 does, window of interest (s), retries on)
SCENARIOS = {
    "S0": ("all endpoints equal", 15, {}, None, True),
    "S1": ("endpoint 0 five times slower, whole run", 15,
           {"slow": [{"from_s": 0, "to_s": FOREVER, "service_ms": 5 * SERVICE_MS}]}, None, True),
    "S1_window": ("endpoint 0 five times slower from t=20 s to t=40 s", 60,
                  {"slow": [{"from_s": 20, "to_s": 40, "service_ms": 5 * SERVICE_MS}]}, (20, 40), True),
    "S2": ("endpoint 0 stalls 200 ms every 2 s", 15, {"stall": {"every_ms": 2000, "for_ms": 200}}, None, True),
    "S3": ("endpoint 0 answers 503 at once from t=5 s to t=25 s, no retry", 30,
           {"fail": [{"from_s": 5, "to_s": 25, "status": 503}]}, (5, 25), False),
    "S3_retry": ("as S3, with one retry on 503 (the shipped route)", 30,
                 {"fail": [{"from_s": 5, "to_s": 25, "status": 503}]}, (5, 25), True),
}

LB_TYPES = {
    "round_robin": ("envoy.load_balancing_policies.round_robin",
                    "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"),
    "least_request": ("envoy.load_balancing_policies.least_request",
                      "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"),
}


def envoy_config(config: str, endpoints: list[str], retry: bool) -> dict:
    """The product's Envoy configuration, adapted to one competitor."""
    post = {"unhinted_share": 1.0} if config == "noop_least_request" else None
    # The per-request mode's chain without its ext_authz: endpoint selection alone, nothing signed.
    cfg = yaml.safe_load(render_envoy("127.0.0.1:0", WASM, endpoints, "127.0.0.1:9", post,
                                      authorization="ext_authz"))
    resources = cfg["static_resources"]
    hcm = connection_manager(cfg)
    keep_wasm = config in ("s3mesh", "noop_least_request")
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_AUTHZ_FILTER
                           and (keep_wasm or not f["name"].startswith("s3mesh."))]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] == "s3"]
    if config != "s3mesh":
        name, type_url = LB_TYPES["round_robin" if config == "round_robin" else "least_request"]
        resources["clusters"][0]["load_balancing_policy"] = {
            "policies": [{"typed_extension_config": {"name": name, "typed_config": {"@type": type_url}}}]}
    if not retry:
        del hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["retry_policy"]
    return cfg


def scaled(obj, k: float):
    """Scales every time in a scenario script (for --quick smoke runs only)."""
    if isinstance(obj, dict):
        return {key: (v * k if key in ("from_s", "to_s", "every_ms", "for_ms") else scaled(v, k))
                for key, v in obj.items()}
    if isinstance(obj, list):
        return [scaled(v, k) for v in obj]
    return obj


def trial(workdir: Path, scenario: str, config: str, time_scale: float) -> dict:
    _, duration, degraded, window, retry = SCENARIOS[scenario]
    duration *= time_scale
    window = tuple(w * time_scale for w in window) if window else (WARMUP_S, duration)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Supervisor(workdir / "logs")
    try:
        spec = [{"service_ms": SERVICE_MS, "slots": SLOTS} for _ in range(ENDPOINTS)]
        spec[0].update(scaled(degraded, time_scale))
        endpoints = start_backend(procs, workdir, spec)
        config_path = workdir / "envoy.json"
        config_path.write_text(json.dumps(envoy_config(config, endpoints, retry)))
        _, listener = start_envoy(procs, config_path, workdir, concurrency=1)
        pid = procs.procs["envoy"].pid
        cpu0 = cpu_seconds(pid)
        out = workdir / "load.json"
        subprocess.run([BIN / "bench-load", "--target", listener, "--path", "/bench/object", "--rate", str(RATE),
                        "--duration-s", str(duration), "--warmup-s", str(WARMUP_S), "--out", out,
                        "--control", endpoints[0]], check=True, capture_output=True, timeout=duration + 60)
        cpu = cpu_seconds(pid) - cpu0
        rss = rss_mb(pid)
        procs.check_all()
    finally:
        procs.stop()
    load = json.loads(out.read_text())
    in_window = [s for s in load["seconds"] if window[0] <= s["t"] < window[1]]
    degraded_n = sum(s["by_endpoint"].get("0", 0) for s in in_window)
    return {
        "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "p999_ms": load["p999_ms"],
        "rps": load["ok_per_s"], "error_rate": load["error_rate"],
        "degraded_share": degraded_n / max(1, sum(s["n"] for s in in_window)),
        "envoy_cpu_us_per_req": cpu * 1e6 / max(1, load["sent"]), "envoy_rss_mb": rss,
        "share_by_second": [[s["t"], s["by_endpoint"].get("0", 0) / max(1, s["n"])] for s in load["seconds"]],
        "errors_by_second": [[s["t"], s["errors"] / max(1, s["n"])] for s in load["seconds"]],
    }


METRICS = ["p50_ms", "p99_ms", "p999_ms", "rps", "error_rate", "degraded_share", "envoy_cpu_us_per_req",
           "envoy_rss_mb"]


def medians(trials: dict) -> dict:
    return {scenario: {config: {m: statistics.median(t[m] for t in runs) for m in METRICS} | {"repetitions": len(runs)}
                       for config, runs in by_config.items()}
            for scenario, by_config in trials.items()}


def goals(med: dict) -> list[tuple[str, float, str, bool]]:
    """(goal, measured ratio or value, target, met)."""
    out = []

    def ratio(scenario, metric, other):
        a, b = med[scenario]["s3mesh"][metric], med[scenario][other][metric]
        return a / b if b else float("inf") if a else 1.0

    def add(text, value, target, met):
        out.append((text, value, target, met))

    if "S1" in med:
        r = ratio("S1", "p99_ms", "least_request")
        add("S1 p99 vs least_request", r, "<= 0.5x", r <= 0.5)
        r = ratio("S1", "p99_ms", "round_robin")
        add("S1 p99 vs round_robin", r, "<= 0.2x", r <= 0.2)
        s = med["S1"]["s3mesh"]["degraded_share"]
        add("S1 share to the slow endpoint", s, "<= 5%", s <= 0.05)
    if "S1_window" in med:
        s = med["S1_window"]["s3mesh"]["degraded_share"]
        add("S1 (t=20-40 s) share to the slow endpoint while slow", s, "<= 5%", s <= 0.05)
    if "S2" in med:
        r = ratio("S2", "p999_ms", "least_request")
        add("S2 p99.9 vs least_request", r, "<= 0.5x", r <= 0.5)
    if "S3" in med:
        r = ratio("S3", "error_rate", "least_request")
        add("S3 error rate vs least_request (no retry)", r, "<= 0.25x", r <= 0.25)
    if "S3_retry" in med:
        e = med["S3_retry"]["s3mesh"]["error_rate"]
        add("S3 error rate with one retry", e, "< 0.01%", e < 0.0001)
    if "S0" in med:
        r = ratio("S0", "p99_ms", "least_request")
        add("S0 p99 vs least_request", r, "<= 1.10x", r <= 1.10)
        r = ratio("S0", "rps", "least_request")
        add("S0 throughput vs least_request", r, ">= 0.97x", r >= 0.97)
        r = ratio("S0", "envoy_cpu_us_per_req", "round_robin")
        add("S0 Envoy CPU per request vs round_robin", r, "<= 1.3x", r <= 1.3)
    return out


def plot(trials: dict, med: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(med)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.2 * len(scenarios), 4), sharey=True)
    for ax, scenario in zip(axes, scenarios):
        xs = range(3)
        for i, config in enumerate(CONFIGS):
            m = med[scenario][config]
            ax.bar([x + i * 0.2 for x in xs], [m["p50_ms"], m["p99_ms"], m["p999_ms"]], width=0.2, label=config)
        ax.set_xticks([x + 0.3 for x in xs], ["p50", "p99", "p99.9"])
        ax.set_yscale("log")
        ax.set_title(scenario)
    axes[0].set_ylabel("latency from intended send (ms, log)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "lb-latency.png", dpi=110)
    plt.close(fig)

    shown = [s for s in ("S1_window", "S3", "S3_retry") if s in trials]
    if not shown:
        return
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.8 * len(shown)), squeeze=False)
    for ax, scenario in zip(axes[:, 0], shown):
        key = "share_by_second" if scenario == "S1_window" else "errors_by_second"
        for config in CONFIGS:
            series: dict[int, list[float]] = {}
            for t in trials[scenario][config]:
                for second, value in t[key]:
                    series.setdefault(second, []).append(value)
            xs = sorted(series)
            ax.plot(xs, [statistics.mean(series[x]) * 100 for x in xs], label=config)
        ax.set_title(f"{scenario}: {'share to endpoint 0' if key == 'share_by_second' else 'error rate'} per second (%)")
        ax.set_xlabel("t (s)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "lb-over-time.png", dpi=110)
    plt.close(fig)


def markdown(med: dict, met: list, reps: int, elapsed_s: float) -> str:
    lines = [
        "## Load balancing (`make bench-lb`)",
        "",
        f"4 endpoints (10 ms service time, 8 slots each: 3,200 requests/s capacity), open-loop GET at "
        f"{RATE:.0f} requests/s, latency from the intended send time, Envoy 1.40 with one worker, a fresh "
        f"Envoy and backend per trial; medians of {reps} repetitions, configurations interleaved (order "
        f"rotated per repetition). Run took {elapsed_s / 60:.0f} min. Raw trials: "
        "`bench/results/lb-trials.json`; medians: `bench/results/lb.json`.",
        "",
        "### Goals",
        "",
        "| goal | measured | target | |",
        "|---|---|---|---|",
    ]
    for text, value, target, ok in met:
        shown = f"{value * 100:.3f}%" if "%" in target else f"{value:.3f}x"
        lines.append(f"| {text} | {shown} | {target} | {'met' if ok else '**missed**'} |")
    lines += ["", "### Medians", "",
              "| scenario | config | p50 ms | p99 ms | p99.9 ms | ok/s | errors | share to endpoint 0 | Envoy CPU µs/req |",
              "|---|---|---|---|---|---|---|---|---|"]
    for scenario, by_config in med.items():
        for config, m in by_config.items():
            lines.append(f"| {scenario} | {config} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['p999_ms']:.2f} | "
                         f"{m['rps']:.0f} | {m['error_rate'] * 100:.3f}% | {m['degraded_share'] * 100:.2f}% | "
                         f"{m['envoy_cpu_us_per_req']:.1f} |")
    lines += ["", "Scenarios: " + "; ".join(f"**{k}** {v[0]}" for k, v in SCENARIOS.items() if k in med) + ".",
              "", "![latency percentiles per policy](bench/results/lb-latency.png)",
              "", "![share to the degraded endpoint and error rate over time](bench/results/lb-over-time.png)", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run; writes nothing under bench/results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work")
    args = parser.parse_args()
    # SIGTERM must unwind like Ctrl-C so that every trial's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scale = 0.2 if args.quick else 1.0
    trials = {s: {c: [] for c in CONFIGS} for s in args.scenarios}
    started = time.monotonic()
    for rep in range(args.repetitions):
        order = CONFIGS[rep % len(CONFIGS):] + CONFIGS[: rep % len(CONFIGS)]
        for scenario in args.scenarios:
            for config in order:
                result = trial(args.workdir / f"{scenario}-{config}-{rep}", scenario, config, scale)
                trials[scenario][config].append(result)
                print(f"rep {rep} {scenario:9} {config:18} p99 {result['p99_ms']:8.2f} ms  p99.9 "
                      f"{result['p999_ms']:8.2f} ms  errors {result['error_rate'] * 100:6.3f}%  "
                      f"share0 {result['degraded_share'] * 100:5.1f}%  cpu {result['envoy_cpu_us_per_req']:5.1f} µs/req",
                      flush=True)
    med = medians(trials)
    met = goals(med)
    for text, value, target, ok in met:
        print(f"{'met   ' if ok else 'MISSED'} {text}: {value:.4f} (target {target})")
    if args.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lb.json").write_text(json.dumps({"scenarios": med}, indent=2))
    (RESULTS / "lb-trials.json").write_text(json.dumps({"scenarios": trials}))
    plot(trials, med)
    write_section(markdown(med, met, args.repetitions, time.monotonic() - started), "bench-lb")


if __name__ == "__main__":
    main()
