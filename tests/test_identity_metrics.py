"""Per-identity metrics: requests, errors by S3 error code, bytes in and out and duration, by
identity and operation class, after traffic from two identities, on both shells in both modes;
and the bound on identity label values."""

import time
import uuid

import pytest

from conftest import STRANGER, TEAM_A, TEAM_B, raw_request, s3_client
from devstack.stack import FILTER_SHELLS, Stack

METRICS = ("s3mesh_identity_requests_total", "s3mesh_identity_errors_total",
           "s3mesh_identity_bytes_received_total", "s3mesh_identity_bytes_sent_total",
           "s3mesh_identity_duration_ms_count")


def snapshot(stack) -> dict:
    """Every per-identity series now: (metric, identity, class, error) -> value."""
    return {(metric, labels.get("s3_identity"), labels.get("s3_class"), labels.get("s3_error")): value
            for metric in METRICS for labels, value in stack.series(metric)}


def grown(before: dict, after: dict) -> dict:
    """What grew between two snapshots; error bodies' bytes left out (their size is the
    store's)."""
    return {key: value - before.get(key, 0) for key, value in after.items()
            if value != before.get(key, 0) and not (key[0] == "s3mesh_identity_bytes_sent_total" and key[1] != "team-a")}


def matches(got: dict, expected: dict) -> bool:
    """Counters exactly as expected; histogram counts at least: Envoy merges histograms into
    Prometheus at its stats flush (every 5 s), so earlier requests' samples can land after the
    first snapshot."""
    histogram = lambda key: key[0].endswith("_count")  # noqa: E731
    counters = lambda d: {k: v for k, v in d.items() if not histogram(k)}  # noqa: E731
    return counters(got) == counters(expected) and all(
        got.get(k, 0) >= v for k, v in expected.items() if histogram(k))


def growth_until(stack, before: dict, expected: dict, timeout: float = 12.0) -> dict:
    """What grew, once it matches `expected` or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = grown(before, snapshot(stack))
        if matches(got, expected) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_two_identities_get_their_own_usage(stack):
    before = snapshot(stack)
    key = f"usage-{uuid.uuid4().hex[:8]}"
    team_a, team_b = s3_client(stack.url, TEAM_A), s3_client(stack.url, TEAM_B)
    team_a.put_object(Bucket="team-a", Key=key, Body=b"x" * 1000)
    for _ in range(3):
        assert team_a.get_object(Bucket="team-a", Key=key)["Body"].read() == b"x" * 1000
    team_b.put_object(Bucket="team-b", Key=key, Body=b"y" * 300)
    assert raw_request(stack.url, "GET", f"/team-a/{key}", TEAM_B)[0] == 403
    assert raw_request(stack.url, "GET", f"/team-b/{key}-missing", TEAM_B)[0] == 404
    assert raw_request(stack.url, "GET", f"/team-b/{key}", STRANGER)[0] == 403
    expected = {
        ("s3mesh_identity_requests_total", "team-a", "write", None): 1,
        ("s3mesh_identity_requests_total", "team-a", "read", None): 3,
        ("s3mesh_identity_bytes_received_total", "team-a", "write", None): 1000,
        ("s3mesh_identity_bytes_sent_total", "team-a", "read", None): 3000,
        ("s3mesh_identity_duration_ms_count", "team-a", "write", None): 1,
        ("s3mesh_identity_duration_ms_count", "team-a", "read", None): 3,
        ("s3mesh_identity_requests_total", "team-b", "write", None): 1,
        ("s3mesh_identity_bytes_received_total", "team-b", "write", None): 300,
        ("s3mesh_identity_duration_ms_count", "team-b", "write", None): 1,
        # Denied by s3mesh, and the store's NoSuchKey: both team-b's reads.
        ("s3mesh_identity_requests_total", "team-b", "read", None): 2,
        ("s3mesh_identity_errors_total", "team-b", "read", "AccessDenied"): 1,
        ("s3mesh_identity_errors_total", "team-b", "read", "NoSuchKey"): 1,
        ("s3mesh_identity_duration_ms_count", "team-b", "read", None): 2,
        # Nobody identified: under "_none".
        ("s3mesh_identity_requests_total", "_none", "read", None): 1,
        ("s3mesh_identity_errors_total", "_none", "read", "AccessDenied"): 1,
        ("s3mesh_identity_duration_ms_count", "_none", "read", None): 1,
    }
    got = growth_until(stack, before, expected)
    assert matches(got, expected), got


@pytest.mark.parametrize("shell", FILTER_SHELLS)
def test_identities_beyond_the_bound_are_counted_together(tmp_path, shell):
    # One worker: in the wasm shell the bound is per worker.
    with Stack(tmp_path / "stack", shell=shell, concurrency=1,
               post_overrides={"max_identity_labels": 1}) as stack:
        for source, bucket in ((TEAM_A, "team-a"), (TEAM_B, "team-b"), (TEAM_A, "team-a")):
            s3_client(stack.url, source).put_object(Bucket=bucket, Key="bounded", Body=b"z")
        identities = {labels["s3_identity"]: value
                      for labels, value in stack.series("s3mesh_identity_requests_total")}
        assert identities == {"team-a": 2, "_other": 1}
        records = stack.audit_records(count=3)
        assert [r["identity"] for r in records] == ["team-a", "team-b", "team-a"], "the audit log names everyone"
