"""`make bench-analytics`: query engines reading Parquet through s3mesh, with the read cache on
and off, against the same engines reading the store directly, in the same run.

The local stack on s3s-fs (`tests/fs-store`, files on disk), whose every request waits
`STORE_TTFB_MS` before the store handles it: the time to first byte of a store across a network.
`FILES` Parquet files are written twice, under a prefix the cache rule opts in and one it does
not. Each engine (DuckDB with httpfs, Polars) runs each query (a count, a filtered aggregation, a
projection of a few columns) on each path:
- `direct`: straight to the store with the identity's own key;
- `cache_off`: through s3mesh, the prefix no rule caches;
- `cache_cold`: through s3mesh, the cached prefix, right after a multi-object delete through
  s3mesh dropped every answer of the bucket;
- `cache_warm`: the same query again.
Every query runs in a fresh engine (DuckDB's own file cache off), so that only s3mesh caches.
`REPETITIONS` repetitions, engines and queries interleaved; medians. Requests reaching the store
are Envoy's upstream requests during each query.

Results: bench/results/analytics.json, analytics.png and the "Analytics read cache" section of
BENCHMARKS.md.
"""

import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.report import RESULTS, write_section  # noqa: E402
from devstack.query_engines import duckdb_connection, polars_options  # noqa: E402
from devstack.stack import Stack  # noqa: E402

SHELLS = ("native", "wasm")
FILES, ROWS, ROW_GROUP = 50, 250_000, 65_536
STORE_TTFB_MS = 5
REPETITIONS = 5
CACHE = {"max_bytes": 1 << 30, "max_entry_bytes": 16 << 20,
         "rules": [{"bucket": "demo", "prefix": "cached/", "ttl_ms": 600_000}]}
PATHS = ("direct", "cache_off", "cache_cold", "cache_warm")
#: Goals (issue 16): warm against cache off, and cache off against direct.
GOAL_REQUESTS, GOAL_TIME, GOAL_OFF = 1 / 3, 0.5, 1.1


def table(part: int) -> pa.Table:
    ids = pa.array(range(part * ROWS, (part + 1) * ROWS), pa.int64())
    return pa.table({"id": ids, "category": pa.array([f"c{i % 13}" for i in range(ROWS)]),
                     "amount": pa.array([i * 0.25 for i in range(ROWS)]),
                     "quantity": pa.array([i % 97 for i in range(ROWS)], pa.int32()),
                     "note": pa.array([f"order {part}-{i}" for i in range(ROWS)])})


QUERIES = {
    "count": "SELECT count(*) FROM {source}",
    "filtered_sum": "SELECT category, sum(amount) FROM {source} WHERE quantity < 10 GROUP BY category",
    "projection": "SELECT id, amount FROM {source} WHERE id % 100000 = 7",
}


def duckdb_run(url, key, prefix, query):
    con = duckdb_connection(url, key)
    return con.execute(QUERIES[query].format(source=f"read_parquet('s3://demo/{prefix}/*.parquet')")).fetchall()


def polars_run(url, key, prefix, query):
    frame = pl.scan_parquet(f"s3://demo/{prefix}/*.parquet", storage_options=polars_options(url, key))
    plans = {
        "count": lambda: frame.select(pl.len()),
        "filtered_sum": lambda: frame.filter(pl.col("quantity") < 10).group_by("category").agg(pl.col("amount").sum()),
        "projection": lambda: frame.filter(pl.col("id") % 100000 == 7).select("id", "amount"),
    }
    return plans[query]().collect().rows()


ENGINES = {"duckdb": duckdb_run, "polars": polars_run}


def populate(stack):
    """Writes the files under both prefixes, straight to the store (through s3mesh a 1 GiB-ish
    upload would only measure uploads)."""
    import boto3
    client = boto3.client("s3", endpoint_url=f"http://{stack.endpoints[0]}", region_name="us-east-1",
                          aws_access_key_id=stack.credentials("local-dev")[0],
                          aws_secret_access_key=stack.credentials("local-dev")[1])
    size = 0
    for part in range(FILES):
        buffer = io.BytesIO()
        pq.write_table(table(part), buffer, row_group_size=ROW_GROUP)
        size += buffer.tell()
        for prefix in ("cached", "plain"):
            client.put_object(Bucket="demo", Key=f"{prefix}/part-{part:03}.parquet", Body=buffer.getvalue())
    return client, size


def forget(stack):
    """Drops every cached answer of the bucket, as a multi-object delete through s3mesh does."""
    import boto3
    import botocore
    from botocore.config import Config
    client = boto3.client("s3", endpoint_url=stack.url, region_name="us-east-1",
                          config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}))
    client.delete_objects(Bucket="demo", Delete={"Objects": [{"Key": "cached/none-such"}]})


def timed(stack, engine, path, query):
    direct = path == "direct"
    url = f"http://{stack.endpoints[0]}" if direct else stack.url
    key = stack.credentials("local-dev") if direct else None
    prefix = "plain" if path in ("direct", "cache_off") else "cached"
    before = sum(stack.upstream_requests().values())
    start = time.monotonic()
    rows = ENGINES[engine](url, key, prefix, query)
    seconds = time.monotonic() - start
    return {"seconds": seconds, "store_requests": None if direct else sum(stack.upstream_requests().values()) - before,
            "rows": sorted(map(repr, rows))}


def run_shell(shell: str, workdir: Path) -> dict:
    with Stack(workdir / shell, shell=shell, backend="s3s-fs", store_ttfb_ms=STORE_TTFB_MS,
               post_overrides={"cache": CACHE}) as stack:
        _, size = populate(stack)
        runs = {e: {q: {p: [] for p in PATHS} for q in QUERIES} for e in ENGINES}
        for rep in range(REPETITIONS):
            for engine in (ENGINES if rep % 2 == 0 else reversed(list(ENGINES))):
                for query in QUERIES:
                    forget(stack)
                    for path in (PATHS if rep % 2 == 0 else ("cache_off", "direct", "cache_cold", "cache_warm")):
                        result = timed(stack, engine, path, query)
                        runs[engine][query][path].append(result)
                    answers = {p: runs[engine][query][p][-1]["rows"] for p in PATHS}
                    if len({json.dumps(a) for a in answers.values()}) != 1:
                        raise SystemExit(f"{shell} {engine} {query}: the paths answered differently")
                    print(f"{shell} rep {rep} {engine:6} {query:12} " + "  ".join(
                        f"{p} {runs[engine][query][p][-1]['seconds'] * 1000:6.0f} ms"
                        f"/{runs[engine][query][p][-1]['store_requests']}" for p in PATHS), flush=True)
    for engine in runs.values():
        for query in engine.values():
            for results in query.values():
                for r in results:
                    del r["rows"]
    return {"data_bytes": size, "runs": runs}


def medians(runs: dict) -> dict:
    return {e: {q: {p: {"seconds": statistics.median(r["seconds"] for r in rs),
                        "store_requests": (statistics.median(r["store_requests"] for r in rs)
                                           if rs[0]["store_requests"] is not None else None)}
                    for p, rs in paths.items()} for q, paths in queries.items()} for e, queries in runs.items()}


def plot(med: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shells = list(med)
    fig, axes = plt.subplots(1, len(shells), figsize=(6 * len(shells), 4), squeeze=False)
    for ax, shell in zip(axes[0], shells):
        groups = [(e, q) for e in ENGINES for q in QUERIES]
        width = 0.8 / len(PATHS)
        for i, p in enumerate(PATHS):
            ax.bar([x + i * width for x in range(len(groups))],
                   [med[shell][e][q][p]["seconds"] * 1000 for e, q in groups], width=width, label=p)
        ax.set_xticks([x + 0.3 for x in range(len(groups))], [f"{e}\n{q}" for e, q in groups], fontsize=7)
        ax.set_ylabel("query time, ms (median)")
        ax.set_title(f"{shell} shell")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        raw = {shell: run_shell(shell, Path(tmp)) for shell in SHELLS}
    med = {shell: medians(r["runs"]) for shell, r in raw.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analytics.json").write_text(json.dumps(
        {"files": FILES, "rows_per_file": ROWS, "store_ttfb_ms": STORE_TTFB_MS, "repetitions": REPETITIONS,
         "cache": CACHE, "medians": med, "raw": raw}, indent=1) + "\n")
    plot(med, RESULTS / "analytics.png")
    size = next(iter(raw.values()))["data_bytes"]
    lines = ["## Analytics read cache (`make bench-analytics`)", "",
             f"The local stack on s3s-fs, every store request delayed {STORE_TTFB_MS} ms; {FILES} Parquet files "
             f"({size / 1e6:.0f} MB, {ROWS:,} rows each, row groups of {ROW_GROUP:,}) under a cached prefix and an "
             f"uncached one; each query in a fresh engine; {REPETITIONS} repetitions interleaved, medians "
             f"(ms, and requests that reached the store). Cold: right after the bucket's answers were dropped. "
             f"Raw: `bench/results/analytics.json`; {time.monotonic() - started:.0f} s.", ""]
    for shell, m in med.items():
        lines += [f"**{shell} shell**", "",
                  "| engine | query | direct | cache off | cache cold | cache warm | warm/off time | warm/off requests | off/direct |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for e in ENGINES:
            for q in QUERIES:
                r = m[e][q]
                t = {p: r[p]["seconds"] * 1000 for p in PATHS}
                n = {p: r[p]["store_requests"] for p in PATHS}
                lines.append(f"| {e} | {q} | {t['direct']:.0f} | {t['cache_off']:.0f} ({n['cache_off']:.0f}) | "
                             f"{t['cache_cold']:.0f} ({n['cache_cold']:.0f}) | {t['cache_warm']:.0f} ({n['cache_warm']:.0f}) | "
                             f"{t['cache_warm'] / t['cache_off']:.2f} | {n['cache_warm'] / max(n['cache_off'], 1):.2f} | "
                             f"{t['cache_off'] / t['direct']:.2f} |")
        lines.append("")
        for e in ENGINES:
            warm = [m[e][q]["cache_warm"]["seconds"] / m[e][q]["cache_off"]["seconds"] for q in QUERIES]
            reqs = [m[e][q]["cache_warm"]["store_requests"] / max(m[e][q]["cache_off"]["store_requests"], 1)
                    for q in QUERIES]
            off = [m[e][q]["cache_off"]["seconds"] / m[e][q]["direct"]["seconds"] for q in QUERIES]
            mark = lambda ok: "met" if ok else "**missed**"  # noqa: E731
            lines.append(f"- {shell}, {e}: warm store requests at most {max(reqs):.2f}x cache off "
                         f"(goal ≤ {GOAL_REQUESTS:.2f}: {mark(max(reqs) <= GOAL_REQUESTS)}); warm query time at most "
                         f"{max(warm):.2f}x (goal ≤ {GOAL_TIME}: {mark(max(warm) <= GOAL_TIME)}); cache off at most "
                         f"{max(off):.2f}x direct (goal ≤ {GOAL_OFF}: {mark(max(off) <= GOAL_OFF)}).")
        lines.append("")
    lines += ["![query times by engine, query and path](bench/results/analytics.png)", ""]
    write_section("\n".join(lines), "bench-analytics")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
