"""The scripted test backend (`bench-backend`, release build) as the benchmarks start it."""

import json
from pathlib import Path

from devstack.processes import Supervisor
from devstack.stack import wait_for

BIN = Path(__file__).resolve().parent.parent / "target" / "release"


def start_backend(procs: Supervisor, workdir: Path, spec: list[dict], prefix=()) -> list[str]:
    """Starts one `bench-backend` process with an endpoint per entry of `spec` (run under
    `prefix`, e.g. a `taskset`) and returns the endpoints' `host:port` once it is ready."""
    (workdir / "spec.json").write_text(json.dumps(spec))
    ready = workdir / "backend.out"
    with open(ready, "wb") as out:
        procs.spawn("backend", [*prefix, BIN / "bench-backend", "--spec", workdir / "spec.json"], stdout=out)
    line = wait_for("bench-backend", lambda: procs.alive("backend") and ready.read_text().strip(), 10,
                    procs.log("backend"))
    return line.split()[1:]
