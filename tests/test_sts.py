"""Per-caller credentials from the store's STS (`profiles.<name>.sts`), through the full local
stack: moto's STS issues the sessions and its S3 checks them (key, secret and
`x-amz-security-token`). team-a and team-b sign with one STS profile here
(`devstack.stack.ext_authz_config`): ext-authz assumes the store's `s3mesh-workloads` role once
per caller, with its own key as the base credential.

What moto cannot show: it does not enforce session policies (an assumed role's requests are
judged by the role's own policies only: `moto/iam/access_control.py`, `AssumedRoleAccessKey`),
so the generated policies are checked by the unit tests in `ext-authz/src/sts/session_policy.rs`.
moto refuses the unsigned `AssumeRoleWithWebIdentity` once its auth is on; devstack's backend
routes that one call to moto's STS with auth off (`devstack.backend.WebIdentity`), so the web
identity path runs against moto's STS too, though moto does not verify the token."""

import re
import time
from datetime import datetime
import urllib.request
from collections import Counter

import pytest

from conftest import TEAM_A, TEAM_B, Load, s3_client
from otlp_collector import Collector
from devstack.stack import AUTHORIZATION_MODES, FILTER_SHELLS, STS_PROFILE, Stack

#: moto's session tokens start so; none may ever show in a log.
MOTO_TOKEN_PREFIX = "FQoGZXIvYXdz"
SESSION = re.compile(r'STS session profile=(\S+) identity="([^"]+)" session_name="([^"]+)" access_key_id=(\S+)')


def sessions(stack) -> list[tuple[float, str, str, str, str]]:
    """(log time in s, profile, identity, session name, access key id) of every session
    ext-authz obtained."""
    out = []
    for line in stack.log("ext-authz").read_text().splitlines():
        if found := SESSION.search(line):
            at = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
            out.append((at, *found.groups()))
    return out


def readiness(stack) -> str:
    try:
        with urllib.request.urlopen(stack.authz_health_url + "/readyz", timeout=5) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()


def assert_no_secret_in_logs(stack):
    base_secret = (stack.workdir / "credentials" / "s3mesh-sts" / "secret_access_key").read_text().strip()
    for name in ("ext-authz", "envoy"):
        log = stack.log(name).read_text()
        assert base_secret not in log, f"the base secret is in the {name} log"
        assert MOTO_TOKEN_PREFIX not in log, f"a session token is in the {name} log"


@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_each_caller_signs_with_its_own_session_which_the_store_accepts(tmp_path, mode, shell):
    sts = {"duration_seconds": 900, "session_policy": True}
    with Stack(tmp_path / "stack", authorization=mode, shell=shell, sts=sts) as stack:
        for source, bucket in ((TEAM_A, "team-a"), (TEAM_B, "team-b")):
            client = s3_client(stack.url, source)
            for n in range(3):
                client.put_object(Bucket=bucket, Key=f"k{n}", Body=b"v")
                assert client.get_object(Bucket=bucket, Key=f"k{n}")["Body"].read() == b"v"
        got = [found for _, *found in sessions(stack)]
        # One session per caller, asked for once however many requests (and workers) needed it.
        assert sorted(identity for _, identity, _, _ in got) == ["team-a", "team-b"], got
        assert all(profile == STS_PROFILE for profile, _, _, _ in got)
        names = {identity: name for _, identity, name, _ in got}
        assert names["team-a"].startswith("team-a-") and names["team-b"].startswith("team-b-")
        keys = {key for _, _, _, key in got}
        assert len(keys) == 2 and all(k.startswith("ASIA") for k in keys), keys
        # s3mesh's own policy still decides first: the shared role could read team-b's bucket.
        with pytest.raises(Exception, match="AccessDenied"):
            s3_client(stack.url, TEAM_A).get_object(Bucket="team-b", Key="k0")
        assert readiness(stack).startswith("ready")
        assert_no_secret_in_logs(stack)


@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_sessions_are_renewed_ahead_of_expiry_under_load_without_a_failed_request(tmp_path, mode):
    # 20 s sessions: renewed once less than a third remains, used until 2 s before expiry.
    with Stack(tmp_path / "stack", authorization=mode, sts={"duration_seconds": 20}) as stack:
        s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
        with Load(stack, "/team-a/k", every_s=0.02, source_ip=TEAM_A) as load:
            time.sleep(32)
        statuses = Counter(status for status, _ in load.between(0))
        assert set(statuses) == {200}, statuses
        obtained = [(at, key) for at, _, identity, _, key in sessions(stack) if identity == "team-a"]
        keys = [key for _, key in obtained]
        assert len(keys) >= 2 and len(set(keys)) == len(keys), keys
        # Renewed ahead: the next session came before the last was out of use (2 s before its
        # expiry), so no request waited for STS.
        for (first, _), (second, _) in zip(obtained, obtained[1:]):
            assert second - first < 18, obtained
        assert_no_secret_in_logs(stack)


@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_with_sts_down_callers_are_served_until_their_session_expires_then_get_503(tmp_path, mode, monkeypatch):
    # ext-authz's metrics reach the collector every half second instead of every minute.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
    with Collector() as collector, Stack(tmp_path / "stack", authorization=mode, sts={"duration_seconds": 12},
                                         otlp_endpoint=collector.endpoint) as stack:
        client = s3_client(stack.url, TEAM_A)
        client.put_object(Bucket="team-a", Key="k", Body=b"v")
        obtained = time.monotonic()
        # STS answers on the store's first endpoint: take it down (S3 goes on on the others;
        # the load starts once the endpoint's connections are cut, a fault of its own).
        stack.first_endpoint(up=False)
        time.sleep(1)
        with Load(stack, "/team-a/k", every_s=0.02, source_ip=TEAM_A) as load:
            # The session is used until 1.2 s before it expires (12 s after it was issued).
            time.sleep(13)
            degraded = readiness(stack)
            stack.first_endpoint(up=True)
            back = time.monotonic()
            time.sleep(5)
        served = load.between(0, obtained + 10)
        assert served and all(s == 200 for s, _ in served), Counter(s for s, _ in served)
        refused = load.between(obtained + 12.5, back)
        assert refused and all(s == 503 for s, _ in refused), Counter(s for s, _ in refused)
        for _, body in refused:
            assert b"<Code>ServiceUnavailable</Code>" in body, body
            said = f"credential profile &quot;{STS_PROFILE}&quot; has no credentials: STS at http://"
            assert said.encode() in body, body
        assert degraded.startswith("degraded") and f'STS profile "{STS_PROFILE}"' in degraded, degraded
        # STS back: the next call after the 2 s failure pause obtains a session again.
        again = load.between(back + 4)
        assert again and all(s == 200 for s, _ in again), Counter(s for s, _ in again)
        assert readiness(stack).startswith("ready")
        assert_no_secret_in_logs(stack)
        # Every call to STS is counted by profile and result: the sessions before and after,
        # the calls that found it down.
        for result in ("ok", "unreachable"):
            calls = collector.metric("s3mesh.authz.sts.calls", profile=STS_PROFILE, result=result)
            assert calls is not None and calls >= 1, (result, sorted(collector.metrics))


def test_a_web_identity_token_file_is_read_again_for_each_session(tmp_path):
    """`AssumeRoleWithWebIdentity` with ext-authz's token file: a rotated token is what the next
    session is asked with (devstack's moto records the tokens it was sent; it does not verify
    them)."""
    token = tmp_path / "token"
    token.write_text("token-one\n")
    sts = {"duration_seconds": 12, "web_identity_token_file": str(token)}
    with Stack(tmp_path / "stack", sts=sts) as stack:
        s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="k", Body=b"v")
        token.write_text("token-two\n")
        with Load(stack, "/team-a/k", every_s=0.05, source_ip=TEAM_A) as load:
            # Renewal is due once less than 4 s of the 12 s session remain.
            time.sleep(10)
        statuses = Counter(status for status, _ in load.between(0))
        assert set(statuses) == {200}, statuses
        sent = (stack.workdir / "web-identity-tokens").read_text().split()
        assert sent[0] == "token-one" and sent[-1] == "token-two", sent
        assert len({key for _, _, identity, _, key in sessions(stack) if identity == "team-a"}) >= 2
        log = stack.log("ext-authz").read_text()
        assert "token-one" not in log and "token-two" not in log, "a token in the log"
