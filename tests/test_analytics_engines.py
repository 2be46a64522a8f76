"""Query engines through s3mesh's read cache: DuckDB (httpfs), Polars and pyarrow read Parquet
files the test writes into the store, with the cache on (its prefix), off (another prefix) and
direct to the store with the caller's own key; every result is the same, and repeated queries
are answered by the cache. Both shells, grant mode (the product's default)."""

import io
import time

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import s3_client
from devstack.query_engines import duckdb_connection, polars_options, pyarrow_filesystem
from devstack.stack import FILTER_SHELLS, Stack

FILES, ROWS = 4, 5000
CACHE = {"rules": [{"bucket": "demo", "prefix": "cached/", "ttl_ms": 60000}]}


def table(part: int) -> pa.Table:
    ids = list(range(part * ROWS, (part + 1) * ROWS))
    return pa.table({"id": ids, "category": [f"c{i % 7}" for i in ids], "amount": [i * 0.25 for i in ids],
                     "note": [f"row {i} of part {part}" for i in ids]})


@pytest.fixture(scope="module", params=FILTER_SHELLS)
def engines(request, tmp_path_factory):
    shell = request.param
    with Stack(tmp_path_factory.mktemp(f"engines-{shell}"), shell=shell, post_overrides={"cache": CACHE}) as s:
        client = s3_client(s.url)
        for part in range(FILES):
            buffer = io.BytesIO()
            pq.write_table(table(part), buffer, row_group_size=1000)
            for prefix in ("cached", "plain"):
                client.put_object(Bucket="demo", Key=f"{prefix}/part-{part}.parquet", Body=buffer.getvalue())
        yield s


def endpoint(stack, direct: bool) -> tuple[str, tuple[str, str] | None]:
    """Where an engine reads and with which key: the store with local-dev's own, or s3mesh with
    none."""
    if direct:
        return f"http://{stack.endpoints[0]}", stack.credentials("local-dev")
    return stack.url, None


def duckdb_query(stack, prefix: str, direct: bool = False):
    con = duckdb_connection(*endpoint(stack, direct))
    source = f"read_parquet('s3://demo/{prefix}/*.parquet')"
    return [con.execute(f"SELECT count(*), sum(amount) FROM {source}").fetchall(),
            con.execute(f"SELECT category, count(*), avg(amount) FROM {source} WHERE id % 3 = 0 "
                        "GROUP BY category ORDER BY category").fetchall(),
            con.execute(f"SELECT id, note FROM {source} WHERE id BETWEEN 4990 AND 5010 ORDER BY id").fetchall()]


def polars_query(stack, prefix: str, direct: bool = False):
    frame = pl.scan_parquet(f"s3://demo/{prefix}/*.parquet", storage_options=polars_options(*endpoint(stack, direct)))
    grouped = (frame.filter(pl.col("id") % 3 == 0).group_by("category")
               .agg(pl.len(), pl.col("amount").mean()).sort("category").collect())
    return [frame.select(pl.len(), pl.col("amount").sum()).collect().rows(), grouped.rows()]


def pyarrow_query(stack, prefix: str, direct: bool = False):
    fs = pyarrow_filesystem(*endpoint(stack, direct))
    paths = [f"demo/{prefix}/part-{part}.parquet" for part in range(FILES)]
    read = pq.read_table(paths, filesystem=fs, columns=["id", "amount"], filters=[("id", "<", 7500)])
    return [read.num_rows, sum(read.column("amount").to_pylist())]


def cache_hits(stack) -> float:
    return sum(v for labels, v in stack.series("s3mesh_cache_hits_total") if labels.get("s3_bucket") == "demo")


@pytest.mark.parametrize("query", [duckdb_query, polars_query, pyarrow_query], ids=["duckdb", "polars", "pyarrow"])
def test_engines_get_the_same_results_with_the_cache_on_off_and_direct(engines, query):
    direct = query(engines, "plain", direct=True)
    assert query(engines, "plain") == direct, "through s3mesh, no cache"
    before = cache_hits(engines)
    assert query(engines, "cached") == direct, "cold cache"
    assert query(engines, "cached") == direct, "warm cache"
    deadline = time.monotonic() + 2
    while cache_hits(engines) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache_hits(engines) > before, "the repeated query was answered by the cache"
