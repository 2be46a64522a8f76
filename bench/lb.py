"""`make bench-lb`: s3mesh's endpoint selection against Envoy's own balancers.

Four endpoints of `bench-backend` (service time a 10 ms sleep behind 8 service slots each, so
queueing is real), open-loop GET load at a fixed rate from `bench-load` (latency measured from
each request's intended send time), one fresh Envoy per trial (one worker). Configurations,
all derived from the product's `envoy/s3mesh.yaml` without ext_authz (it does not take part in
balancing and is measured by `make bench-overhead`):

- round_robin, least_request: Envoy's balancers, no wasm;
- s3mesh: both wasm filter instances, override_host with least_request fallback (as shipped);
- s3mesh_native: the same with both roles in the native shell (Envoy dynamic module);
- noop_least_request: both wasm filter instances loaded but the hint switched off
  (`unhinted_share: 1.0`) on a least_request cluster: the cost of the wasm VMs without the
  balancing decision.

Two conditions, in the same run: Envoy with the machine's CPU to itself ("unconstrained"), and
Envoy under a CPU limit ("cpu_limited": a CFS quota in a cgroup of its own, which is how
Kubernetes enforces a sidecar container's `resources.limits.cpu`; see bench/cpu_limit.py). The
quota is CPU_HEADROOM times the cores the same configuration's Envoy used over its whole
unconstrained trial of the same scenario in the same repetition (which runs first), so every
configuration is short of CPU by the same margin on every machine; what each costs in CPU is the
S0 CPU goal's business. Every repetition runs every condition, scenario and configuration,
rotating the configuration order from one repetition to the next. For both s3mesh shells, each trial also
reads from Envoy's stats how the requests reached the degraded endpoint 0
(`s3mesh_endpoint_requests_total` by `s3_route`). S0's CPU goal is judged on rounds seconds apart
after each repetition (see CPU_PAIRED). Results: bench/results/lb.json (medians over repetitions),
bench/results/lb-trials.json (every trial), the plots bench/results/lb-*.png and the "Load
balancing" section of BENCHMARKS.md.
"""

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backend import start_backend  # noqa: E402
from bench.cpu_limit import CpuLimit, Quota  # noqa: E402
from bench.report import RESULTS, percentile_bars, write_section  # noqa: E402
from bench.rounds import paired_rounds, quartiles, rotated  # noqa: E402
from bench.procfs import cpu_seconds, rss_mb  # noqa: E402
from devstack.processes import Supervisor  # noqa: E402
from devstack.stack import (EXT_AUTHZ_FILTER, NATIVE_METRICS_LAG_S, WASM, connection_manager,  # noqa: E402
                            render_envoy, start_envoy)

BIN = ROOT / "target" / "release"
#: `s3mesh` runs the wasm shell, `s3mesh_native` both roles in the native shell (the release
#: build of `libs3mesh_native.so`); every goal is checked for each.
CONFIGS = ["round_robin", "least_request", "s3mesh", "s3mesh_native", "noop_least_request"]
SUBJECTS = ["s3mesh", "s3mesh_native"]
#: S0's Envoy CPU per request against round_robin's: the native shell exists to cost less.
CPU_GOAL = {"s3mesh": 1.3, "s3mesh_native": 1.15}
ENDPOINTS, SERVICE_MS, SLOTS = 4, 10.0, 8
RATE = 1000.0  # requests/s: about 31% of the healthy fleet's 3,200/s capacity
WARMUP_S = 2.0
FOREVER = 1e9
#: Envoy's CPU limit in the cpu_limited condition: a sidecar sized with a quarter more than it
#: uses at RATE, so it runs at about 80% of its quota and is stopped whenever a burst uses a
#: period's quota up. An absolute limit (0.3 cores until the fifth run) meant a different
#: shortage on every machine: on one 25% slower, s3mesh's wasm Envoy needed more than 0.3 cores.
CPU_HEADROOM = 1.25
#: Until the eighth run the quota was sized from 1.2 s of the limited trial's own warm-up: that
#: sample put the quota anywhere from 1.0x to 1.5x of what the trial then needed, and which of
#: those a trial drew decided S0's p99 under the limit. A whole unconstrained trial (10-40 s)
#: measures the need itself.
CONDITIONS = {"unconstrained": None, "cpu_limited": Quota(headroom=CPU_HEADROOM)}
#: The no-op control measures what hosting the wasm filters costs; the unconstrained runs show it,
#: so the limited ones leave it out to keep the run within an hour.
CONFIGS_UNDER = {"unconstrained": CONFIGS, "cpu_limited": ["round_robin", "least_request", "s3mesh", "s3mesh_native"]}

#: name -> (description, duration s, what endpoint 0 does, window of interest (s), retries on)
SCENARIOS = {
    "S0": ("all endpoints equal", 10, {}, None, True),
    "S1": ("endpoint 0 five times slower, whole run", 10,
           {"slow": [{"from_s": 0, "to_s": FOREVER, "service_ms": 5 * SERVICE_MS}]}, None, True),
    "S1_window": ("endpoint 0 five times slower from t=10 s to t=25 s", 40,
                  {"slow": [{"from_s": 10, "to_s": 25, "service_ms": 5 * SERVICE_MS}]}, (10, 25), True),
    "S2": ("endpoint 0 stalls 200 ms every 2 s", 10, {"stall": {"every_ms": 2000, "for_ms": 200}}, None, True),
    "S3": ("endpoint 0 answers 503 at once from t=4 s to t=12 s, no retry", 16,
           {"fail": [{"from_s": 4, "to_s": 12, "status": 503}]}, (4, 12), False),
    "S3_retry": ("as S3, with one retry on 503 (the shipped route)", 16,
                 {"fail": [{"from_s": 4, "to_s": 12, "status": 503}]}, (4, 12), True),
}
#: S0's CPU goal is judged on rounds seconds apart, as bench-overhead judges the native rate goal:
#: this VM's speed moves by half between trials minutes apart, and one S0 trial's CPU per request
#: by ±10% from the next. After each repetition, these configurations run up at once on fresh
#: Envoys sharing one S0 backend and are loaded one at a time at RATE for ROUND_S, their order
#: rotated per round (the idle ones only wait).
CPU_PAIRED = ("round_robin", "s3mesh", "s3mesh_native")
ROUNDS, ROUND_S = 4, 4.0

#: After S1_window's slow spell, the endpoint counts as recovered once a second gives it at least
#: this share (a fair share is 1/ENDPOINTS).
RECOVERED_SHARE = 0.8 / ENDPOINTS

LB_TYPES = {
    "round_robin": ("envoy.load_balancing_policies.round_robin",
                    "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"),
    "least_request": ("envoy.load_balancing_policies.least_request",
                      "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"),
}


def shell_of(config: str) -> str:
    """The filter shell a configuration runs."""
    return "native" if config == "s3mesh_native" else "wasm"


def envoy_config(config: str, endpoints: list[str], retry: bool, tuning: dict | None = None) -> dict:
    """The product's Envoy configuration, adapted to one competitor (`tuning`: post filter
    settings to try instead of the shipped defaults)."""
    post = {"unhinted_share": 1.0} if config == "noop_least_request" else tuning
    # The per-request mode's chain without its ext_authz: endpoint selection alone, nothing signed.
    cfg = yaml.safe_load(render_envoy("127.0.0.1:0", WASM, endpoints, "127.0.0.1:9", post,
                                      authorization="ext_authz", shell=shell_of(config), audit_log_path=None))
    resources = cfg["static_resources"]
    hcm = connection_manager(cfg)
    keep_filter = config in ("s3mesh", "s3mesh_native", "noop_least_request")
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_AUTHZ_FILTER
                           and (keep_filter or not f["name"].startswith("s3mesh."))]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] == "s3"]
    if not config.startswith("s3mesh"):
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


def cpu_rounds(workdir: Path, rotation: int, time_scale: float) -> list[dict[str, float]]:
    """[`ROUNDS`] rounds of S0's load on each of [`CPU_PAIRED`] (see there), the first round's
    order starting at `rotation`: each round's Envoy CPU µs per request by configuration."""
    *_, retry = SCENARIOS["S0"]
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Supervisor(workdir / "logs")
    try:
        endpoints = start_backend(procs, workdir, [{"service_ms": SERVICE_MS, "slots": SLOTS}] * ENDPOINTS)
        envoys = {}
        for config in CPU_PAIRED:
            path = workdir / f"{config}.json"
            path.write_text(json.dumps(envoy_config(config, endpoints, retry)))
            # Named after the configuration: the three run at once.
            _, listener = start_envoy(procs, path, workdir, concurrency=1, name=f"envoy-{config}", native_dir=BIN)
            envoys[config] = (listener, procs.procs[f"envoy-{config}"].pid)
            open_loop(listener, workdir, WARMUP_S * time_scale)  # connections to the backend, code paged in

        def cpu_per_request(listener: str, pid: int) -> float:
            cpu0 = cpu_seconds(pid)
            load = open_loop(listener, workdir, ROUND_S * time_scale)
            return (cpu_seconds(pid) - cpu0) * 1e6 / max(1, load["sent"])

        measured = paired_rounds({config: partial(cpu_per_request, *envoys[config]) for config in CPU_PAIRED},
                                 ROUNDS, rotation)
        procs.check_all()
        return measured
    finally:
        procs.stop()


def cpu_ratios(measured: list[list[dict[str, float]]]) -> dict[str, list[float]]:
    """Each subject's CPU per request over round_robin's in every round (`measured`: the rounds of
    each repetition), in run order."""
    each = [r for rep in measured for r in rep]
    return {subject: [r[subject] / r["round_robin"] for r in each] for subject in SUBJECTS}


#: The filter's route counter in Prometheus form, as either shell names it.
ROUTE_STAT = re.compile(r'^(?:envoy_)?s3mesh_endpoint_requests_total\{s3_endpoint="([^"]+)",s3_route="([a-z_]+)"\} (\d+)$',
                        re.M)


def routes_to(admin_url: str, endpoint: str, config: str) -> dict[str, int]:
    """How the requests served by `endpoint` reached it, from the filter's counters."""
    if shell_of(config) == "native":
        time.sleep(NATIVE_METRICS_LAG_S)
    with urllib.request.urlopen(f"{admin_url}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    return {route: int(n) for address, route, n in ROUTE_STAT.findall(text) if address == endpoint}


def cores_allowed(quota: Quota | None, trials: dict, scenario: str, config: str, rep: int) -> float | None:
    """The CPU quota of a trial in cores: none (unconstrained), a fixed one, or the headroom times
    what the same configuration's unconstrained trial of `scenario` used in repetition `rep`."""
    if quota is None:
        return None
    if quota.headroom is None:
        return quota.cores
    return quota.cores_for(trials["unconstrained"][scenario][config][rep]["envoy_cores"])


def open_loop(listener: str, workdir: Path, duration_s: float, control: str | None = None) -> dict:
    """`bench-load`'s open loop at [`RATE`] for `duration_s` (the first [`WARMUP_S`] left out of
    its latencies), starting the backend's scenario clock at `control` if given; its report."""
    out = workdir / "load.json"
    command = [BIN / "bench-load", "--target", listener, "--path", "/bench/object", "--rate", str(RATE),
               "--duration-s", str(duration_s), "--warmup-s", str(min(WARMUP_S, duration_s / 2)), "--out", out]
    # `run` kills the load on a timeout or any other exception.
    done = subprocess.run(command + (["--control", control] if control else []), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=duration_s + 60)
    if done.returncode:
        raise RuntimeError(f"bench-load exited with {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.read_text())


def trial(workdir: Path, scenario: str, config: str, time_scale: float, cores: float | None,
          tuning: dict | None = None) -> dict:
    """One trial; with `cores`, Envoy runs under a CPU quota of that many cores from its first
    request on."""
    _, duration, degraded, window, retry = SCENARIOS[scenario]
    duration *= time_scale
    window = tuple(w * time_scale for w in window) if window else (WARMUP_S, duration)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Supervisor(workdir / "logs")
    limit = CpuLimit("s3mesh-bench-envoy") if cores else None
    try:
        spec = [{"service_ms": SERVICE_MS, "slots": SLOTS} for _ in range(ENDPOINTS)]
        spec[0].update(scaled(degraded, time_scale))
        endpoints = start_backend(procs, workdir, spec)
        config_path = workdir / "envoy.json"
        config_path.write_text(json.dumps(envoy_config(config, endpoints, retry, tuning)))
        admin_url, listener = start_envoy(procs, config_path, workdir, concurrency=1, native_dir=BIN)
        pid = procs.procs["envoy"].pid
        if limit:
            limit.add(pid)
            limit.set(cores)
            throttled0 = limit.throttled()
        cpu0, started = cpu_seconds(pid), time.monotonic()
        load = open_loop(listener, workdir, duration, endpoints[0])
        cpu, elapsed = cpu_seconds(pid) - cpu0, time.monotonic() - started
        rss = rss_mb(pid)
        throttled = [b - a for a, b in zip(throttled0, limit.throttled())] if limit else [0, 0.0]
        routes = routes_to(admin_url, endpoints[0], config) if config.startswith("s3mesh") else {}
        procs.check_all()
    finally:
        procs.stop()
        if limit:
            limit.remove()
    in_window = [s for s in load["seconds"] if window[0] <= s["t"] < window[1]]
    degraded_n = sum(s["by_endpoint"].get("0", 0) for s in in_window)
    share = [(s["t"], s["by_endpoint"].get("0", 0) / max(1, s["n"])) for s in load["seconds"]]
    recovered = [t for t, x in share if t >= window[1] and x >= RECOVERED_SHARE]
    return {
        # Seconds from the end of S1_window's slow spell until endpoint 0 had its share back
        # (the rest of the run if it never had).
        "recovery_s": (recovered[0] if recovered else duration) - window[1] if scenario == "S1_window" else 0.0,
        "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "p999_ms": load["p999_ms"],
        "rps": load["ok_per_s"], "error_rate": load["error_rate"],
        "degraded_share": degraded_n / max(1, sum(s["n"] for s in in_window)),
        "envoy_cpu_us_per_req": cpu * 1e6 / max(1, load["sent"]), "envoy_rss_mb": rss,
        "throttled_periods": throttled[0], "throttled_s": throttled[1],
        # What a cpu_limited trial's quota is sized from; the quota itself (cpu_limited only).
        "envoy_cores": cpu / elapsed, "quota_cores": cores,
        "routes_to_degraded": routes,
        "share_by_second": [list(x) for x in share],
        "errors_by_second": [[s["t"], s["errors"] / max(1, s["n"])] for s in load["seconds"]],
    }


METRICS = ["p50_ms", "p99_ms", "p999_ms", "rps", "error_rate", "degraded_share", "envoy_cpu_us_per_req",
           "envoy_cores", "envoy_rss_mb", "throttled_s", "recovery_s"]
#: Measured in the cpu_limited condition only (None in the other).
LIMITED_METRICS = ["quota_cores"]
ROUTES = ["faster", "less_loaded", "tie", "faded", "probe", "alone", "unhinted", "retry"]


def medians(trials: dict) -> dict:
    """Per scenario and configuration, the median of every metric over the repetitions, and the
    median count of each route to endpoint 0."""
    def summary(runs):
        out = {m: statistics.median(t[m] for t in runs) for m in METRICS} | {"repetitions": len(runs)}
        out |= {m: statistics.median(t[m] for t in runs) for m in LIMITED_METRICS if runs[0].get(m) is not None}
        if any(t["routes_to_degraded"] for t in runs):
            out["routes_to_degraded"] = {r: statistics.median(t["routes_to_degraded"].get(r, 0) for t in runs)
                                         for r in ROUTES}
        return out
    return {scenario: {config: summary(runs) for config, runs in by_config.items()}
            for scenario, by_config in trials.items()}


def goals(med: dict, subject: str, rounds: list[float] | None = None) -> list[tuple[str, float, str, bool]]:
    """(goal, measured ratio or value, target, met) of `subject` for one condition's medians;
    S0's CPU goal on the median of `rounds` (the subject's per-round ratios) where given."""
    out = []

    def ratio(scenario, metric, other):
        a, b = med[scenario][subject][metric], med[scenario][other][metric]
        return a / b if b else float("inf") if a else 1.0

    def add(text, value, target, met):
        out.append((text, value, target, met))

    if "S1" in med:
        r = ratio("S1", "p99_ms", "least_request")
        add("S1 p99 vs least_request", r, "<= 0.5x", r <= 0.5)
        r = ratio("S1", "p99_ms", "round_robin")
        add("S1 p99 vs round_robin", r, "<= 0.2x", r <= 0.2)
        s = med["S1"][subject]["degraded_share"]
        add("S1 share to the slow endpoint", s, "<= 1%", s <= 0.01)
    if "S1_window" in med:
        s = med["S1_window"][subject]["degraded_share"]
        add("S1_window share to the slow endpoint while slow", s, "<= 1%", s <= 0.01)
        r = med["S1_window"][subject]["recovery_s"]
        add("S1_window: seconds until the healed endpoint has its share back", r, "<= 15 s", r <= 15)
    if "S2" in med:
        r = ratio("S2", "p999_ms", "least_request")
        add("S2 p99.9 vs least_request", r, "<= 0.5x", r <= 0.5)
    if "S3" in med:
        r = ratio("S3", "error_rate", "least_request")
        add("S3 error rate vs least_request (no retry)", r, "<= 0.25x", r <= 0.25)
    if "S3_retry" in med:
        e = med["S3_retry"][subject]["error_rate"]
        add("S3 error rate with one retry", e, "< 0.01%", e < 0.0001)
    if "S0" in med:
        r = ratio("S0", "p99_ms", "least_request")
        add("S0 p99 vs least_request", r, "<= 1.10x", r <= 1.10)
        r = ratio("S0", "rps", "least_request")
        add("S0 throughput vs least_request", r, ">= 0.97x", r >= 0.97)
        r = quartiles(rounds)[1] if rounds else ratio("S0", "envoy_cpu_us_per_req", "round_robin")
        limit = CPU_GOAL[subject]
        add("S0 Envoy CPU per request vs round_robin", r, f"<= {limit}x", r <= limit)
    return out


def plot(trials: dict, med: dict, measured_rounds: list[list[dict[str, float]]], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if measured_rounds:
        fig, ax = plt.subplots(figsize=(8, 3.4))
        for subject, ratios in cpu_ratios(measured_rounds).items():
            line, = ax.plot(range(1, len(ratios) + 1), ratios, marker="o", label=f"{subject}, per round")
            ax.axhline(CPU_GOAL[subject], color=line.get_color(), linestyle="--", linewidth=1,
                       label=f"{subject} goal {CPU_GOAL[subject]}x")
        ax.set_xlabel(f"round (repetitions of {ROUNDS}, in run order)")
        ax.set_ylabel("Envoy CPU per request / round_robin's")
        ax.set_title("S0, unconstrained: CPU per request against round_robin in rounds seconds apart", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "lb-cpu-rounds.png", dpi=100)
        plt.close(fig)

    conditions = list(med)
    scenarios = list(next(iter(med.values())))
    fig, axes = plt.subplots(len(conditions), len(scenarios), figsize=(3.2 * len(scenarios), 3.6 * len(conditions)),
                             sharey=True, squeeze=False)
    for row, condition in zip(axes, conditions):
        for ax, scenario in zip(row, scenarios):
            percentile_bars(ax, med[condition][scenario])
            ax.set_title(f"{scenario}, {condition}", fontsize=9)
        row[0].set_ylabel("latency from intended send (ms, log)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lb-latency.png", dpi=100)
    plt.close(fig)

    shown = [(c, s) for c in conditions for s in ("S1_window", "S3", "S3_retry") if s in trials[c]]
    if not shown:
        return
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.6 * len(shown)), squeeze=False)
    for ax, (condition, scenario) in zip(axes[:, 0], shown):
        key = "share_by_second" if scenario == "S1_window" else "errors_by_second"
        for config, runs in trials[condition][scenario].items():
            series: dict[int, list[float]] = {}
            for t in runs:
                for second, value in t[key]:
                    series.setdefault(second, []).append(value)
            xs = sorted(series)
            ax.plot(xs, [statistics.mean(series[x]) * 100 for x in xs], label=config)
        what = "share to endpoint 0" if key == "share_by_second" else "error rate"
        ax.set_title(f"{scenario}, {condition}: {what} per second (%)", fontsize=9)
        ax.set_xlabel("t (s)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lb-over-time.png", dpi=100)
    plt.close(fig)


def rounds_section(med: dict, measured: list[list[dict[str, float]]]) -> list[str]:
    """What S0's CPU goal is judged on: every round, and the subjects' ratios summarised."""
    paired = cpu_ratios(measured)
    sweep = med["unconstrained"]["S0"]
    summary = []
    for subject, ratios in paired.items():
        low, median, high = quartiles(ratios)
        of_medians = sweep[subject]["envoy_cpu_us_per_req"] / sweep["round_robin"]["envoy_cpu_us_per_req"]
        summary.append(f"{subject} {median:.3f}x (quartiles {low:.3f}-{high:.3f}; the trials' medians "
                       f"{of_medians:.3f}x)")
    rows = [f"| {i + 1}.{j + 1} | " + " | ".join(f"{r[c]:.1f}" for c in CPU_PAIRED) + " | "
            + " | ".join(f"{r[x] / r['round_robin']:.3f}" for x in SUBJECTS) + " |"
            for i, rep in enumerate(measured) for j, r in enumerate(rep)]
    return [
        "", "### S0 Envoy CPU per request, in rounds", "",
        f"The unconstrained column of S0's CPU goal is the median of {len(measured) * ROUNDS} per-round ratios: "
        f"after each repetition, {', '.join(CPU_PAIRED)} up at once on fresh Envoys sharing one S0 backend, "
        f"loaded one at a time at {RATE:.0f} requests/s for {ROUND_S:.0f} s, order rotated per round "
        "(trials of a configuration sit minutes apart, and this VM's speed moves within minutes). "
        + "; ".join(summary) + ".", "",
        "| repetition.round | " + " | ".join(f"{c} µs/req" for c in CPU_PAIRED) + " | "
        + " | ".join(f"{x} / round_robin" for x in SUBJECTS) + " |",
        "|---|" + "---:|" * (len(CPU_PAIRED) + len(SUBJECTS)),
        *rows,
        "", "![S0 CPU per request against round_robin, per round](bench/results/lb-cpu-rounds.png)",
    ]


def markdown(med: dict, met: dict, reps: int, elapsed_s: float, quota: Quota,
             measured_rounds: list[list[dict[str, float]]]) -> str:
    conditions = list(med)
    lines = [
        "## Load balancing (`make bench-lb`)",
        "",
        f"4 endpoints (10 ms service time, 8 slots each: 3,200 requests/s capacity), open-loop GET at "
        f"{RATE:.0f} requests/s, latency from the intended send time, Envoy 1.40 with one worker, a fresh "
        f"Envoy and backend per trial; medians of {reps} repetitions, configurations interleaved (order "
        f"rotated per repetition). Two conditions in the same run: **unconstrained** (Envoy has the "
        f"machine's CPU) and **cpu_limited** (Envoy in a cgroup with a CFS quota per 100 ms period, how "
        f"Kubernetes enforces a sidecar's CPU limit, of {quota}: each limited trial's quota is that "
        f"times the cores the same configuration's Envoy used over its whole unconstrained trial of the same "
        f"scenario in the same repetition, so every configuration is short of CPU by the same margin on any "
        f"machine; the S0 CPU goal prices what each needs). Run took "
        f"{elapsed_s / 60:.0f} min. Raw trials: `bench/results/lb-trials.json`; medians: `bench/results/lb.json`.",
        "",
        "### Goals",
        "",
        "Each goal for each shell of the filter: `s3mesh` (wasm) and `s3mesh_native` (dynamic module).",
        "",
        "| goal | target | " + " | ".join(f"{c} {x}" for c in conditions for x in met[c]) + " |",
        "|---|---|" + "---|" * sum(len(met[c]) for c in conditions),
    ]
    first = met[conditions[0]]
    for i, (text, *_) in enumerate(next(iter(first.values()))):
        targets = {x: rows[i][2] for x, rows in first.items()}
        target = (next(iter(targets.values())) if len(set(targets.values())) == 1
                  else ", ".join(f"{x} {t}" for x, t in targets.items()))
        cells = []
        for condition in conditions:
            for rows in met[condition].values():
                _, value, shown_target, ok = rows[i]
                shown = (f"{value * 100:.3f}%" if "%" in shown_target else f"{value:.1f} s"
                         if shown_target.endswith(" s") else f"{value:.3f}x")
                cells.append(f"{shown} {'met' if ok else '**missed**'}")
        lines.append(f"| {text} | {target} | " + " | ".join(cells) + " |")
    if measured_rounds:
        lines += rounds_section(med, measured_rounds)
    lines += ["", "### Medians", "",
              "| condition | scenario | config | p50 ms | p99 ms | p99.9 ms | ok/s | errors | share to endpoint 0 "
              "| Envoy CPU µs/req | Envoy throttled s | Envoy quota cores |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for condition, by_scenario in med.items():
        for scenario, by_config in by_scenario.items():
            for config, m in by_config.items():
                quota = f"{m['quota_cores']:.3f}" if "quota_cores" in m else ""
                lines.append(f"| {condition} | {scenario} | {config} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                             f"{m['p999_ms']:.2f} | {m['rps']:.0f} | {m['error_rate'] * 100:.3f}% | "
                             f"{m['degraded_share'] * 100:.2f}% | {m['envoy_cpu_us_per_req']:.1f} | "
                             f"{m['throttled_s']:.2f} | {quota} |")
    lines += ["", "### How s3mesh's requests reached endpoint 0", "",
              "Median requests per trial that endpoint 0 served, by `s3_route` of "
              "`s3mesh_endpoint_requests_total` (whole trial, warm-up included).", "",
              "| condition | scenario | config | " + " | ".join(ROUTES) + " |", "|---|---|---|" + "---|" * len(ROUTES)]
    for condition, by_scenario in med.items():
        for scenario, by_config in by_scenario.items():
            for subject in SUBJECTS:
                routes = by_config.get(subject, {}).get("routes_to_degraded")
                if routes:
                    lines.append(f"| {condition} | {scenario} | {subject} | "
                                 + " | ".join(f"{routes[r]:g}" for r in ROUTES) + " |")
    scenarios = next(iter(med.values()))
    lines += ["", "Scenarios: " + "; ".join(f"**{k}** {v[0]}" for k, v in SCENARIOS.items() if k in scenarios) + ".",
              "", "![latency percentiles per policy](bench/results/lb-latency.png)",
              "", "![share to the degraded endpoint and error rate over time](bench/results/lb-over-time.png)", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    parser.add_argument("--configs", nargs="*", default=CONFIGS, choices=CONFIGS,
                        help="a subset, for exploring")
    parser.add_argument("--tuning", type=json.loads, help="post filter settings to try (JSON); writes nothing")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--cpu-limit", type=float, help="a fixed quota in cores for cpu_limited, to explore; writes nothing")
    limit.add_argument("--cpu-headroom", type=float,
                       help=f"cpu_limited's quota as this times the cores used (instead of {CPU_HEADROOM}); writes nothing")
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run: prints its report, plots into --workdir, "
                        "writes nothing under bench/results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work")
    args = parser.parse_args()
    # SIGTERM must unwind like Ctrl-C so that every trial's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scale = 0.2 if args.quick else 1.0
    configs = {c: [x for x in CONFIGS_UNDER[c] if x in args.configs] for c in args.conditions}
    explored_quota = (Quota(cores=args.cpu_limit) if args.cpu_limit else Quota(headroom=args.cpu_headroom)
                      if args.cpu_headroom else None)
    limits = CONDITIONS | ({"cpu_limited": explored_quota} if explored_quota else {})
    if "cpu_limited" in args.conditions:
        if limits["cpu_limited"].headroom and args.conditions[:1] != ["unconstrained"]:
            parser.error("a quota sized by headroom needs the unconstrained condition first (or --cpu-limit)")
        CpuLimit("s3mesh-bench-envoy").remove()  # fails now, not in an hour
    trials = {c: {s: {x: [] for x in configs[c]} for s in args.scenarios} for c in args.conditions}
    # An exploration reports its medians only: no goals, so no rounds to judge one.
    exploring = bool(args.configs != CONFIGS or args.tuning or explored_quota)
    in_rounds = not exploring and "S0" in args.scenarios and "unconstrained" in args.conditions
    measured_rounds = []
    started = time.monotonic()
    for rep in range(args.repetitions):
        for condition in args.conditions:
            names = configs[condition]
            order = rotated(names, rep)
            for scenario in args.scenarios:
                for config in order:
                    cores = cores_allowed(limits[condition], trials, scenario, config, rep)
                    result = trial(args.workdir / f"{condition}-{scenario}-{config}-{rep}", scenario, config, scale,
                                   cores, args.tuning)
                    trials[condition][scenario][config].append(result)
                    print(f"rep {rep} {condition:13} {scenario:9} {config:18} p99 {result['p99_ms']:8.2f} ms  "
                          f"p99.9 {result['p999_ms']:8.2f} ms  errors {result['error_rate'] * 100:6.3f}%  "
                          f"share0 {result['degraded_share'] * 100:5.2f}%  cpu {result['envoy_cpu_us_per_req']:5.1f} "
                          f"µs/req  throttled {result['throttled_s']:5.2f} s"
                          + (f" of quota {result['quota_cores']:.3f} cores" if result["quota_cores"] else "")
                          + f"  routes {result['routes_to_degraded']}", flush=True)
        if in_rounds:
            measured_rounds.append(cpu_rounds(args.workdir / f"rounds-{rep}", rep, scale))
            for i, r in enumerate(measured_rounds[-1]):
                print(f"rep {rep} round {i} S0 Envoy CPU µs/req " + "  ".join(f"{c} {v:5.1f}" for c, v in r.items()),
                      flush=True)
    med = {c: medians(t) for c, t in trials.items()}
    if exploring:
        # Its medians go to the work directory, with what was explored.
        explored = {"argv": sys.argv[1:], "cpu_limit": str(limits.get("cpu_limited")), "conditions": med}
        (args.workdir / "lb-explored.json").write_text(json.dumps(explored, indent=2))
        for condition, by_scenario in med.items():
            for scenario, by_config in by_scenario.items():
                for config, m in by_config.items():
                    print(f"median {condition:13} {scenario:9} {config:18} p99 {m['p99_ms']:8.2f} ms  p99.9 "
                          f"{m['p999_ms']:8.2f} ms  share0 {m['degraded_share'] * 100:5.2f}%  throttled "
                          f"{m['throttled_s']:5.2f} s  routes {m.get('routes_to_degraded', {})}")
        return
    paired = cpu_ratios(measured_rounds) if measured_rounds else {}
    met = {c: {x: goals(m, x, paired.get(x) if c == "unconstrained" else None) for x in SUBJECTS if x in configs[c]}
           for c, m in med.items()}
    for condition, by_subject in met.items():
        for subject, results in by_subject.items():
            for text, value, target, ok in results:
                print(f"{condition:13} {subject:13} {'met   ' if ok else 'MISSED'} {text}: {value:.4f} (target {target})")
    report = markdown(med, met, args.repetitions, time.monotonic() - started, limits["cpu_limited"], measured_rounds)
    if args.quick:
        plot(trials, med, measured_rounds, args.workdir)
        print(report)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lb.json").write_text(json.dumps({"conditions": med, "cpu_rounds": measured_rounds}, indent=2))
    (RESULTS / "lb-trials.json").write_text(json.dumps({"conditions": trials, "cpu_rounds": measured_rounds}))
    plot(trials, med, measured_rounds, RESULTS)
    write_section(report, "bench-lb")


if __name__ == "__main__":
    main()
