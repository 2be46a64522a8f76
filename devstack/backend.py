"""One S3 store served on several loopback endpoints: moto, with signature checks and IAM.

moto verifies SigV4 (header auth) and evaluates per-user IAM policies once
INITIAL_NO_AUTH_ACTION_COUNT is reached. One moto process holds one store; this module serves
that one store from N threaded HTTP listeners, so the endpoints share buckets and objects the
way the endpoints of a real store (VAST, Ceph RGW, MinIO) do.

Run as `python -m devstack.backend --stack stack.yaml --workdir DIR`: it creates the buckets, an
IAM user per identity allowed `s3:*` on that identity's buckets only, writes each user's keys to
DIR/credentials/<identity>/ (the shape of a mounted Kubernetes Secret), turns signature checks
on, and then writes DIR/backend.json with the endpoint addresses. moto's STS answers on the same
endpoints: a role every identity's session may assume, and a user allowed to assume it, serve
ext-authz's STS profiles (`Stack(sts=...)`).

Faults: SIGUSR1 takes the first endpoint down (its listener closed, its open connections cut,
as when a store node dies); SIGUSR2 brings it back on the same port.
"""

import argparse
import io
import json
import os
import signal
import socket
import sys
import threading
import urllib.parse
from pathlib import Path

import yaml

# Everything is free until set-up is done; then every request must be signed.
os.environ.setdefault("INITIAL_NO_AUTH_ACTION_COUNT", "inf")
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")

import boto3  # noqa: E402

from devstack.credentials import write_secret  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from moto import settings  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402


def guarded(app):
    """Hides moto's control API (/moto-api: reset state, switch auth off) from clients."""

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return app(environ, start_response)

    return wsgi


class WebIdentity:
    """Lets moto's STS answer `AssumeRoleWithWebIdentity`, which the real call sends unsigned:
    moto finds no service to dispatch an unsigned request to, and with its auth on it refuses
    any request without an `Authorization` header. Such a call goes to moto's STS app with
    moto's auth off for its duration (a lock keeps that window to the one call), and the token
    it carried is appended to `record` so tests can see which token each session was asked
    with. moto does not verify the token itself."""

    def __init__(self, app, record: Path):
        self.app, self.record = app, record
        self.sts = create_backend_app("sts")
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        form_post = (environ.get("REQUEST_METHOD") == "POST"
                     and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"))
        if not form_post or "HTTP_AUTHORIZATION" in environ:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        if form.get("Action") != ["AssumeRoleWithWebIdentity"]:
            return self.app(environ, start_response)
        with self.lock, self.record.open("a") as record:
            record.write(form.get("WebIdentityToken", [""])[0] + "\n")
            settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
            try:
                return self.sts(environ, start_response)
            finally:
                settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


class Endpoint:
    """One listener of the store, which can go down (listener closed, connections cut) and come
    back on the same port."""

    def __init__(self, host: str, app):
        # Below the ephemeral range: while down, no outgoing connection takes the port as its
        # source port (which made `up` fail, and the endpoint stayed down).
        self.host, self.port, self.app = host, free_port(), app
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        endpoint = self

        class Handler(MotoRequestHandler):
            def setup(self):
                super().setup()
                with endpoint.lock:
                    endpoint.connections.add(self.connection)

            def finish(self):
                with endpoint.lock:
                    endpoint.connections.discard(self.connection)
                super().finish()

        self.handler = Handler
        self.server = None
        self.up()

    def up(self):
        self.server = make_server(self.host, self.port, self.app, threaded=True, request_handler=self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def bucket_policy(buckets):
    resources = []
    for b in buckets:
        resources += [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}],
        }
    )


#: The role STS profiles assume (every stack bucket) and the user whose key signs AssumeRole.
STS_ROLE, STS_USER = "s3mesh-workloads", "s3mesh-sts"


def set_up_sts(iam, stack: dict, workdir: Path) -> str:
    """A role for per-caller STS sessions, and the user ext-authz asks for them with (its key
    in DIR/credentials/s3mesh-sts). Returns the role's ARN."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=STS_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=STS_ROLE, PolicyName="buckets", PolicyDocument=bucket_policy(stack["buckets"]))
    iam.create_user(UserName=STS_USER)
    assume = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}]}
    iam.put_user_policy(UserName=STS_USER, PolicyName="assume", PolicyDocument=json.dumps(assume))
    key = iam.create_access_key(UserName=STS_USER)["AccessKey"]
    write_secret(workdir / "credentials" / STS_USER, key["AccessKeyId"], key["SecretAccessKey"])
    return role


def set_up(endpoint: str, stack: dict, workdir: Path) -> str:
    """Creates buckets, users, keys and permissions while auth is still off; returns the STS
    role's ARN."""
    session = boto3.session.Session(
        aws_access_key_id="setup", aws_secret_access_key="setup", region_name=stack["region"]
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    iam = session.client("iam", endpoint_url=endpoint)
    for bucket in stack["buckets"]:
        s3.create_bucket(Bucket=bucket)
    for identity in stack["identities"]:
        user = identity["name"]
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName="buckets", PolicyDocument=bucket_policy(identity["buckets"])
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        write_secret(workdir / "credentials" / user, key["AccessKeyId"], key["SecretAccessKey"])
    return set_up_sts(iam, stack, workdir)


#: What the store acts on: SIGUSR1 and SIGUSR2 (see the module), SIGINT and SIGTERM (it stops).
HANDLED_SIGNALS = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    stack = yaml.safe_load(args.stack.read_text())
    # Signals wait for this thread to take them, in the order sent. Blocked before any thread
    # starts (threads inherit the mask): a signal the kernel gave another thread would have run
    # its Python handler only when this thread next woke, and a wait does not wake for it. So the
    # endpoint went down only when the signal to bring it back came, both at once, and stayed
    # down (tests/test_faults.py saw it under load).
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)

    app = guarded(WebIdentity(DomainDispatcherApplication(create_backend_app),
                              args.workdir / "web-identity-tokens"))
    servers = [Endpoint(args.host, app) for _ in range(int(stack["endpoints"]))]
    endpoints = [s.address for s in servers]

    sts_role = set_up(f"http://{endpoints[0]}", stack, args.workdir)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request is verified

    state = args.workdir / "backend.json"
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"endpoints": endpoints, "sts_role_arn": sts_role}))
    tmp.rename(state)
    print(f"s3 backend ready on {', '.join(endpoints)}", file=sys.stderr, flush=True)

    faults = {signal.SIGUSR1: servers[0].down, signal.SIGUSR2: servers[0].up}
    while (sig := signal.sigwait(HANDLED_SIGNALS)) in faults:
        faults[sig]()
    for server in servers:
        server.server.shutdown()


if __name__ == "__main__":
    main()
