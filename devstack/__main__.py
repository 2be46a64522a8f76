"""`python -m devstack run`: the local stack in the foreground until Ctrl-C (`make run`)."""

import argparse
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from devstack.stack import AUTHORIZATION_MODES, FILTER_SHELLS, ROOT, Stack, StackError


def port_free(listen: str) -> bool:
    host, port = listen.rsplit(":", 1)
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
        try:
            s.bind((host.strip("[]"), int(port)))
        except OSError:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--listen", default=os.environ.get("S3MESH_LISTEN", "127.0.0.1:8480"))
    parser.add_argument("--workdir", type=Path, default=ROOT / ".run")
    parser.add_argument("--authorization", choices=AUTHORIZATION_MODES,
                        default=os.environ.get("S3MESH_AUTHORIZATION", "grant"),
                        help="grant: the filter signs with short-lived grants (default); "
                             "ext_authz: ext-authz checks every request")
    parser.add_argument("--shell", choices=FILTER_SHELLS, default=os.environ.get("S3MESH_FILTER", "wasm"),
                        help="wasm: the proxy-wasm filter (default); native: the Envoy dynamic module")
    args = parser.parse_args()
    if not port_free(args.listen):
        print(f"s3mesh: {args.listen} is in use; set S3MESH_LISTEN=host:port to listen elsewhere", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Envoy's spans and ext-authz's telemetry go to the standard OTLP endpoint when one is set.
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    stack = Stack(args.workdir, listen=args.listen, authorization=args.authorization, shell=args.shell,
                  otlp_endpoint=otlp, trace_object_keys=os.environ.get("S3MESH_TRACE_OBJECT_KEYS") == "1")
    try:
        stack.start()
    except StackError as e:
        print(f"s3mesh: {e}", file=sys.stderr)
        return 1
    print(f"""
s3mesh is serving S3 on {stack.url}  (store endpoints: {', '.join(stack.endpoints)})
Envoy admin: {stack.admin_url}   logs: {args.workdir / 'logs'}   authorization: {args.authorization}   filter: {args.shell}

Try it from another shell -- no S3 credentials needed, s3mesh signs for you:
  echo hello > /tmp/hello.txt
  .venv/bin/aws --no-sign-request --endpoint-url {stack.url} s3 cp /tmp/hello.txt s3://demo/
  .venv/bin/aws --no-sign-request --endpoint-url {stack.url} s3 ls s3://demo/
  .venv/bin/aws --no-sign-request --endpoint-url {stack.url} s3 cp s3://demo/hello.txt -

Ctrl-C stops everything.""", flush=True)
    try:
        while not stop.wait(0.5):
            stack.processes.check_all()
    except StackError as e:
        print(f"s3mesh: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    print("s3mesh stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
