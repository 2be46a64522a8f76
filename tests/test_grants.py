"""Grant mode's promises, through the full local stack: a change of policy or of a caller's
identity reaches Envoy within the grant lifetime (the revocation bound), and one worker's grant
serves every worker. ext-authz polls its file every 2 s, so a file change takes effect within
2 s + the grant lifetime; in a cluster the watch delivers the change instead of the poll."""

import time

import pytest
import yaml

from conftest import TEAM_A, TEAM_B, raw_request, s3_client
from devstack.stack import FILTER_SHELLS, Stack

TTL_S = 2
FILE_POLL_S = 2
BOUND_S = FILE_POLL_S + TTL_S


@pytest.fixture(params=FILTER_SHELLS)
def grant_stack(tmp_path, request):
    with Stack(tmp_path / "stack", authorization="grant", grant_ttl_seconds=TTL_S, shell=request.param) as s:
        yield s


def edit_policy(stack, change):
    path = stack.workdir / "ext-authz.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return time.monotonic()


def seconds_until(predicate, limit: float) -> float:
    """Polls `predicate` every 50 ms; the seconds it took to hold, or fails after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"not within {limit} s")


def after_bound(changed: float):
    """Waits until the revocation bound has passed since the change at `changed`."""
    time.sleep(max(0.0, changed + BOUND_S + 0.3 - time.monotonic()))


def status(stack, source, path="/team-a/k"):
    return raw_request(stack.url, "GET", path, source)[0]


def counter(stack, name: str) -> int:
    """A counter of the "post" filter."""
    return stack.filter_stat(name)


def test_a_revoked_rule_stops_signing_within_the_bound_and_a_new_one_starts(grant_stack):
    stack = grant_stack
    s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
    assert status(stack, TEAM_A) == 200

    def revoke(config):
        config["rules"] = [r for r in config["rules"] if r["profile"] != "team-a"]

    changed = edit_policy(stack, revoke)
    took = seconds_until(lambda: status(stack, TEAM_A) == 403, BOUND_S + 1.5)
    print(f"revocation took effect after {took:.2f} s (bound {BOUND_S} s)")
    # Each worker drops the old grant when it expires: once the bound has passed, on all of them.
    after_bound(changed)
    for _ in range(10):
        status_code, _, body = raw_request(stack.url, "GET", "/team-a/k", TEAM_A)
        assert status_code == 403 and b"<Code>AccessDenied</Code>" in body and b"team-a" in body

    def restore(config):
        config["rules"].append({"match": {"identities": ["team-a"]}, "buckets": ["team-a"],
                                "operations": ["read", "write", "list"], "profile": "team-a"})

    edit_policy(stack, restore)
    took = seconds_until(lambda: status(stack, TEAM_A) == 200, BOUND_S + 1.5)
    print(f"a new rule took effect after {took:.2f} s")


def test_an_address_that_changes_hands_gets_the_new_identity_within_the_bound(grant_stack):
    """The address binding of a grant ends with the grant: when TEAM_A's address is given to
    team-b (a pod deleted and its IP reused), it stops acting as team-a within the bound."""
    stack = grant_stack
    s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
    s3_client(stack.url, TEAM_B).put_object(Bucket="team-b", Key="k", Body=b"w")
    assert status(stack, TEAM_A) == 200

    def move(config):
        for identity in config["identities"]:
            if identity["name"] == "team-a":
                identity["source_cidrs"] = ["127.0.0.42/32"]
            if identity["name"] == "team-b":
                identity["source_cidrs"] = [f"{TEAM_A}/32", f"{TEAM_B}/32"]

    changed = edit_policy(stack, move)
    seconds_until(lambda: status(stack, TEAM_A) == 403, BOUND_S + 1.5)
    after_bound(changed)
    for _ in range(10):
        assert status(stack, TEAM_A) == 403
        assert status(stack, TEAM_A, "/team-b/k") == 200


def test_one_fetch_serves_every_worker_until_the_grant_expires(grant_stack):
    stack = grant_stack
    s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
    time.sleep(TTL_S + 0.1)  # let the upload's grant expire
    fetched = counter(stack, "s3mesh_grants_fetched_total")
    assert status(stack, TEAM_A) == 200
    started = time.monotonic()
    # New connections each time: Envoy spreads them over its two workers.
    statuses = [status(stack, TEAM_A) for _ in range(30)]
    elapsed = time.monotonic() - started
    assert statuses == [200] * 30
    if elapsed < TTL_S - 0.2:
        assert counter(stack, "s3mesh_grants_fetched_total") - fetched == 1


@pytest.mark.envoy_matrix
def test_a_busy_caller_is_renewed_in_the_background_and_never_refused(grant_stack):
    """Requests that find their grant in its last fifth queue a renewal, which runs in the
    background (the wasm worker's root context, the native configuration on Envoy's main thread)
    while requests keep being signed with the grant in hand."""
    stack = grant_stack
    s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
    renewed = counter(stack, "s3mesh_grants_renewed_total")
    deadline = time.monotonic() + 3 * TTL_S
    statuses = []
    while time.monotonic() < deadline:
        statuses.append(status(stack, TEAM_A))
        time.sleep(0.02)
    assert set(statuses) == {200}, statuses
    assert counter(stack, "s3mesh_grants_renewed_total") - renewed >= 2
