"""How the query engines of the analytics tests and `make bench-analytics` reach S3: DuckDB
(httpfs, from the `duckdb-ext-httpfs` package), Polars and pyarrow, either through s3mesh (no key:
the client signs nothing it could leak, `pre` strips whatever it would) or straight to the store
with an identity's own key."""

import site
from pathlib import Path

#: Where DuckDB finds the httpfs extension that the `duckdb-ext-httpfs` package installs.
DUCKDB_EXTENSIONS = next((Path(p) / "duckdb_ext" / "extensions" for p in site.getsitepackages()
                          if (Path(p) / "duckdb_ext").is_dir()), None)


def duckdb_connection(url: str, key: tuple[str, str] | None = None):
    """A fresh in-memory DuckDB reading `s3://` from `url` (`http://host:port`), signing with
    `key` when given. Its own file cache is off, so that repeated reads reach S3."""
    import duckdb
    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{DUCKDB_EXTENSIONS}'")
    con.execute("LOAD httpfs")
    con.execute("SET enable_external_file_cache = false")
    key_id, secret = key or ("none", "none")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{key_id}', SECRET '{secret}', "
                f"ENDPOINT '{url.removeprefix('http://')}', URL_STYLE 'path', USE_SSL false, "
                "REGION 'us-east-1')")
    return con


def polars_options(url: str, key: tuple[str, str] | None = None) -> dict:
    """Polars' `storage_options` for `url`."""
    options = {"aws_endpoint_url": url, "aws_allow_http": "true", "aws_region": "us-east-1"}
    if key:
        return options | {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}
    return options | {"aws_skip_signature": "true"}


def pyarrow_filesystem(url: str, key: tuple[str, str] | None = None):
    """A pyarrow S3 filesystem for `url`."""
    import pyarrow.fs as pafs
    host = url.removeprefix("http://")
    if key:
        return pafs.S3FileSystem(access_key=key[0], secret_key=key[1], endpoint_override=host, scheme="http",
                                 region="us-east-1")
    return pafs.S3FileSystem(anonymous=True, endpoint_override=host, scheme="http", region="us-east-1")
