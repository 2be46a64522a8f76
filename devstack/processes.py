"""Child processes that cannot outlive their parent: each in its own session, logging to a
file, killed (SIGTERM, then SIGKILL) as a whole process group by `stop()`, which also runs at
interpreter exit."""

import atexit
import os
import signal
import subprocess
from pathlib import Path


class ProcessError(RuntimeError):
    """A child exited or did not come up; the message names it and shows its log's tail."""


class Supervisor:
    def __init__(self, log_dir: Path, cwd: Path | None = None):
        self.log_dir = Path(log_dir)
        self.cwd = cwd
        self.procs: dict[str, subprocess.Popen] = {}
        atexit.register(self.stop)

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def tail(self, name: str, chars: int = 3000) -> str:
        log = self.log(name)
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def spawn(self, name: str, cmd, env=None, stdout=None) -> subprocess.Popen:
        """Starts `cmd`; its output goes to the log (stdout to `stdout` instead, when given)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen([str(c) for c in cmd], stdout=stdout or log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=self.cwd)
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        """True while `name` runs; raises ProcessError with its log once it has exited."""
        proc = self.procs[name]
        if proc.poll() is not None:
            raise ProcessError(f"{name} exited with {proc.returncode}; log {self.log(name)}:\n{self.tail(name)}")
        return True

    def check_all(self):
        for name in list(self.procs):
            self.alive(name)

    def kill(self, name: str):
        """Stops `name`; a name never started is an error (a fault test that kills nothing must
        not pass)."""
        if name not in self.procs:
            raise ProcessError(f"no process named {name!r} to kill (running: {', '.join(self.procs)})")
        proc = self.procs.pop(name)
        if proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(5)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self):
        for name in reversed(list(self.procs)):
            self.kill(name)
