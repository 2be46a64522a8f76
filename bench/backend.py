"""The scripted test backend (`bench-backend`, release build) as the benchmarks start it."""

import json
from pathlib import Path

from devstack.processes import Supervisor
from devstack.stack import wait_for

BIN = Path(__file__).resolve().parent.parent / "target" / "release"


def start_ready(procs: Supervisor, workdir: Path, name: str, argv: list) -> list[str]:
    """Starts `argv` as process `name` and returns the addresses of the `ready ADDR…` line it
    prints on stdout once it listens (the bench servers' convention)."""
    ready = workdir / f"{name}.out"
    with open(ready, "wb") as out:
        procs.spawn(name, argv, stdout=out)
    line = wait_for(name, lambda: procs.alive(name) and ready.read_text().strip(), 10, procs.log(name))
    return line.split()[1:]


def start_backend(procs: Supervisor, workdir: Path, spec: list[dict], prefix=()) -> list[str]:
    """Starts one `bench-backend` process with an endpoint per entry of `spec` (run under
    `prefix`, e.g. a `taskset`) and returns the endpoints' `host:port` once it is ready."""
    (workdir / "spec.json").write_text(json.dumps(spec))
    return start_ready(procs, workdir, "backend", [*prefix, BIN / "bench-backend", "--spec", workdir / "spec.json"])
