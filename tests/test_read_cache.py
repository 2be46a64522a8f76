"""The read cache: HEAD, whole and ranged GETs of opted-in prefixes answered by the proxy after
each request is authorized; writes through s3mesh never served stale, writes at the store at
most the freshness bound, and a newer version the store shows drops the older one's answers;
callers without read access get 403, not cached bytes; what the store would answer differently
passes through; the audit record says hit or miss; an answer one worker kept serves every worker.
Both shells, both authorization modes."""

import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import LOCAL_DEV, TEAM_A, TEAM_B, raw_request, s3_client
from devstack.stack import AUTHORIZATION_MODES, DEFAULT_STACK, FILTER_SHELLS, Stack

#: A caller limited to reading one prefix of team-a's bucket.
READER = "127.0.0.4"
TTL_MS = 2000
CACHE = {"max_bytes": 96 * 1024, "max_entry_bytes": 16 * 1024,
         "rules": [{"bucket": "team-a", "prefix": "cached/", "ttl_ms": TTL_MS}]}
HIT = "x-s3mesh-cache"


@pytest.fixture(scope="module", params=[(s, m) for s in FILTER_SHELLS for m in AUTHORIZATION_MODES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def cached(request, tmp_path_factory):
    shell, mode = request.param
    workdir = tmp_path_factory.mktemp(f"cache-{shell}-{mode}")
    stack = yaml.safe_load(DEFAULT_STACK.read_text())
    stack["identities"].append({"name": "reader", "source": f"{READER}/32", "buckets": ["team-a"],
                                "prefixes": ["cached/open/"], "operations": ["read"]})
    stack_file = workdir / "stack.yaml"
    stack_file.write_text(yaml.safe_dump(stack))
    # Two workers: every connection is a new one, and either worker may take it.
    with Stack(workdir / "stack", stack_file=stack_file, shell=shell, authorization=mode,
               post_overrides={"cache": CACHE}, concurrency=2) as s:
        yield s


def request(stack, method: str, path: str, source: str = TEAM_A, headers=None, body=None):
    """`raw_request`, header names in lower case (as Envoy sends them)."""
    status, received, answer = raw_request(stack.url, method, path, source, headers=headers, body=body)
    return status, {name.lower(): value for name, value in received.items()}, answer


def key(prefix: str = "cached/") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def put(stack, k: str, body: bytes, source=TEAM_A):
    status, _, answer = request(stack, "PUT", f"/team-a/{k}", source, body=body)
    assert status == 200, answer


def sent_upstream(stack) -> int:
    return sum(stack.upstream_requests().values())


def twice(stack, method, path, source=TEAM_A, headers=None):
    """The same request twice: the first reaches the store, the second should not."""
    first = request(stack, method, path, source, headers)
    before = sent_upstream(stack)
    second = request(stack, method, path, source, headers)
    return first, second, sent_upstream(stack) - before


def test_reads_are_answered_by_the_proxy_after_the_first(cached):
    k, body = key(), bytes(range(256)) * 8
    put(cached, k, body)
    first, second, upstream = twice(cached, "GET", f"/team-a/{k}")
    assert (first[0], first[2], HIT in first[1]) == (200, body, False)
    assert (second[0], second[2], second[1].get(HIT)) == (200, body, "hit")
    assert upstream == 0
    for name in ("etag", "content-type", "last-modified", "content-length"):
        assert second[1][name] == first[1][name], name
    assert second[1]["x-amz-request-id"] and second[1]["x-amz-request-id"] != first[1].get("x-amz-request-id")
    first, second, upstream = twice(cached, "HEAD", f"/team-a/{k}")
    assert (second[0], second[1].get(HIT), upstream, second[2]) == (200, "hit", 0, b"")
    assert second[1]["content-length"] == str(len(body)) == first[1]["content-length"]
    for spec, part, total in (("bytes=2-5", body[2:6], "2-5"), ("bytes=-3", body[-3:], f"{len(body) - 3}-{len(body) - 1}"),
                              ("bytes=2000-", body[2000:], f"2000-{len(body) - 1}")):
        first, second, upstream = twice(cached, "GET", f"/team-a/{k}", headers={"Range": spec})
        assert (first[0], first[2]) == (206, part), spec
        assert (second[0], second[2], second[1].get(HIT), upstream) == (206, part, "hit", 0), spec
        assert second[1]["content-range"] == first[1]["content-range"] == f"bytes {total}/{len(body)}"


def connections_per_worker(stack) -> dict[str, int]:
    """Connections each Envoy worker took on its listeners (the admin listener runs on the main
    thread)."""
    counts: dict[str, int] = {}
    for name, n in stack.stats().items():
        parts = name.split(".")
        if parts[0] == "listener" and parts[-1] == "downstream_cx_total" and parts[-2].startswith("worker_"):
            counts[parts[-2]] = counts.get(parts[-2], 0) + n
    return counts


def test_every_worker_serves_what_one_kept(cached):
    """Envoy's two workers take connections as the kernel spreads them; an answer kept by one is
    served by the other (wasm: through Envoy's shared data, the VMs share no memory)."""
    for _ in range(3):
        k, body = key(), b"w" * 1024
        put(cached, k, body)
        request(cached, "GET", f"/team-a/{k}")
        before, upstream = connections_per_worker(cached), sent_upstream(cached)
        started = time.monotonic()
        answers = [request(cached, "GET", f"/team-a/{k}") for _ in range(16)]
        took = time.monotonic() - started
        grown = {w: n - before.get(w, 0) for w, n in connections_per_worker(cached).items()}
        assert took < TTL_MS / 1000, f"too slow to tell: 16 requests took {took:.1f} s"
        assert [(s, h.get(HIT), b) for s, h, b in answers] == [(200, "hit", body)] * 16
        assert sent_upstream(cached) == upstream
        if sorted(n > 0 for n in grown.values()) == [True, True]:
            return
    pytest.fail(f"the kernel gave every connection to one worker three times: {grown}")


def test_what_the_store_would_answer_differently_passes_through(cached):
    k, body = key(), b"conditional and uncacheable forms"
    put(cached, k, body)
    etag = request(cached, "GET", f"/team-a/{k}", TEAM_A)[1]["etag"]
    passing = [
        ("GET", f"/team-a/{k}", {"If-None-Match": etag}),
        ("GET", f"/team-a/{k}", {"If-Match": etag}),
        ("GET", f"/team-a/{k}", {"Range": "bytes=0-1,4-5"}),
        ("GET", f"/team-a/{k}?response-content-type=text%2Fplain", {}),
        ("GET", f"/team-a/{k}?partNumber=1", {}),
    ]
    for method, path, headers in passing:
        first, second, upstream = twice(cached, method, path, headers=headers)
        assert HIT not in second[1] and upstream == 1, (path, headers)
        assert second[0] == first[0], (path, headers)
    status, headers, _ = request(cached, "GET", f"/team-a/{k}", TEAM_A, headers={"If-None-Match": etag})
    assert status == 304 and HIT not in headers
    other = key("elsewhere/")
    put(cached, other, body)
    first, second, upstream = twice(cached, "GET", f"/team-a/{other}")
    assert (second[2], upstream, HIT in second[1]) == (body, 1, False), "outside the cached prefix"


def test_writes_through_s3mesh_are_never_served_stale(cached):
    k = key()
    put(cached, k, b"version one")
    twice(cached, "GET", f"/team-a/{k}")
    put(cached, k, b"version two")
    status, headers, body = request(cached, "GET", f"/team-a/{k}", TEAM_A)
    assert (status, body, HIT in headers) == (200, b"version two", False)
    assert request(cached, "DELETE", f"/team-a/{k}", TEAM_A)[0] == 204
    assert request(cached, "GET", f"/team-a/{k}", TEAM_A)[0] == 404
    s3 = s3_client(cached.url, TEAM_A)
    keys = [key(), key()]
    for k in keys:
        put(cached, k, b"before the batch delete")
        twice(cached, "GET", f"/team-a/{k}")
    s3.delete_objects(Bucket="team-a", Delete={"Objects": [{"Key": keys[0]}]})
    assert request(cached, "GET", f"/team-a/{keys[0]}", TEAM_A)[0] == 404
    # A multi-object delete names its keys in the body: the whole bucket's answers go.
    assert HIT not in request(cached, "GET", f"/team-a/{keys[1]}", TEAM_A)[1]


def test_writes_at_the_store_are_served_stale_at_most_the_freshness_bound(cached):
    k, bound = key(), TTL_MS / 1000
    put(cached, k, b"as cached")
    asked = time.monotonic()
    assert request(cached, "GET", f"/team-a/{k}", TEAM_A)[2] == b"as cached"
    answered = time.monotonic()  # the answer was kept between `asked` and now
    direct = s3_client(f"http://{cached.endpoints[0]}", signed_with=cached.credentials("team-a"))
    direct.put_object(Bucket="team-a", Key=k, Body=b"written at the store")
    status, headers, body = request(cached, "GET", f"/team-a/{k}", TEAM_A)
    if time.monotonic() - asked < bound:
        assert (body, headers.get(HIT)) == (b"as cached", "hit"), "within the bound: the staleness accepted"
    time.sleep(max(0.0, answered + bound + 0.2 - time.monotonic()))
    status, headers, body = request(cached, "GET", f"/team-a/{k}", TEAM_A)
    assert (status, body) == (200, b"written at the store")


def test_a_new_version_seen_at_the_store_drops_the_older_ones_answers(cached):
    """A reader must never mix two versions of an object (a Parquet footer from one, column
    chunks from the other): once the store answers with a new ETag, the older answers go."""
    k, bound = key(), TTL_MS / 1000
    put(cached, k, b"0123456789 version one")
    asked = time.monotonic()
    for method, headers in (("HEAD", None), ("GET", {"Range": "bytes=0-3"})):
        assert request(cached, method, f"/team-a/{k}", TEAM_A, headers=headers)[0] in (200, 206)
    direct = s3_client(f"http://{cached.endpoints[0]}", signed_with=cached.credentials("team-a"))
    new_etag = direct.put_object(Bucket="team-a", Key=k, Body=b"9876543210 version two")["ETag"]
    # A range not cached yet: the store answers it, with the new version's ETag.
    status, headers, body = request(cached, "GET", f"/team-a/{k}", TEAM_A, headers={"Range": "bytes=-3"})
    assert (status, body, headers["etag"]) == (206, b"two", new_etag)
    for method, range_ in (("HEAD", None), ("GET", "bytes=0-3")):
        status, headers, body = request(cached, method, f"/team-a/{k}", TEAM_A,
                                        headers={"Range": range_} if range_ else None)
        assert time.monotonic() - asked < bound, "too slow to tell: the freshness bound passed"
        assert (headers["etag"], HIT in headers) == (new_etag, False), (method, headers)
        assert body == (b"9876" if range_ else b"")


def test_the_audit_record_says_what_the_cache_did(cached):
    k = key()
    put(cached, k, b"audited")
    since = cached.audit_log_size()
    request(cached, "PUT", f"/team-a/{key('uncached/')}", TEAM_A, body=b"x")
    twice(cached, "GET", f"/team-a/{k}")
    records = cached.audit_records(since, count=3)
    assert [(r["operation"], r["cache"]) for r in records] == [
        ("PutObject", None), ("GetObject", "miss"), ("GetObject", "hit")], records
    assert records[2]["decision"] == "allow" and records[2]["endpoint"] is None, records[2]


def test_callers_without_read_access_get_403_not_the_cached_bytes(cached):
    open_key, secret_key = key("cached/open/"), key("cached/secret/")
    for k in (open_key, secret_key):
        put(cached, k, b"cached by team-a")
        twice(cached, "GET", f"/team-a/{k}")
    for source in (TEAM_B, LOCAL_DEV):
        status, headers, body = request(cached, "GET", f"/team-a/{open_key}", source)
        assert (status, HIT in headers) == (403, False) and b"<Code>AccessDenied</Code>" in body
    # The reader signs with a store key of its own, which the store has not answered yet: its
    # first read goes there (the store's policy for that key holds too), the second is a hit.
    first, second, upstream = twice(cached, "GET", f"/team-a/{open_key}", READER)
    assert (first[0], first[2], HIT in first[1]) == (200, b"cached by team-a", False)
    assert (second[0], second[1].get(HIT), upstream) == (200, "hit", 0), "inside its prefix"
    status, headers, body = request(cached, "GET", f"/team-a/{secret_key}", READER)
    assert (status, HIT in headers) == (403, False) and b"cached by team-a" not in body


def test_the_cache_counts_per_bucket_and_stays_within_its_bound(cached):
    def counts():
        return {m: sum(v for labels, v in cached.series(f"s3mesh_cache_{m}_total") if labels.get("s3_bucket") == "team-a")
                for m in ("hits", "misses", "evictions", "hit_bytes")}
    before = counts()
    keys = [key() for _ in range(12)]
    for k in keys:
        put(cached, k, b"e" * 12 * 1024)
        twice(cached, "GET", f"/team-a/{k}")
    # 12 answers of 12 KiB do not fit in 96 KiB: the oldest go.
    first, _, upstream = twice(cached, "GET", f"/team-a/{keys[0]}")
    assert HIT not in first[1]
    deadline = time.monotonic() + 3
    while (grown := {m: v - before[m] for m, v in counts().items()})["hits"] < 13 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert grown["hits"] == 13 and grown["misses"] == 13, grown
    assert grown["hit_bytes"] == 13 * 12 * 1024 and grown["evictions"] >= 5, grown
