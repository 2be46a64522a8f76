"""A CPU limit on a running process, the way Kubernetes enforces a container's
`resources.limits.cpu`: a CFS bandwidth quota on a cgroup (`cpu.cfs_quota_us` per
`cpu.cfs_period_us`). Within each period the process may run for the quota; once it has used it
up, the kernel stops it until the next period, so a sidecar at its limit sees its work delayed
in bursts, not evenly slowed. Needs the cgroup v1 `cpu` controller (what these machines mount);
elsewhere it says so.

`Quota` says how much a benchmark allows: a fixed number of cores, or a headroom over what the
process was measured to use, so that the same limit means the same shortage on a machine five
times slower."""

import os
from dataclasses import dataclass
from pathlib import Path

CPU_CONTROLLER = Path("/sys/fs/cgroup/cpu")
#: Kubernetes' default CFS period.
PERIOD_US = 100_000


class CpuLimitUnavailable(RuntimeError):
    """This machine does not let the benchmark create a CPU cgroup."""


@dataclass(frozen=True)
class Quota:
    """`cores` fixed, or `headroom` times the cores the process used while it was measured
    unconstrained (a limit sized for what the process needs, on whatever machine runs it)."""

    cores: float | None = None
    headroom: float | None = None

    def __post_init__(self):
        if (self.cores is None) == (self.headroom is None):
            raise ValueError("a quota is either cores or a headroom, not both or neither")

    def cores_for(self, used_cores: float) -> float:
        """The quota in cores for a process measured at `used_cores`."""
        return self.cores if self.cores is not None else self.headroom * used_cores

    def __str__(self):
        return f"{self.cores} cores" if self.cores is not None else f"{self.headroom}x the cores used unconstrained"


class CpuLimit:
    """A cgroup of its own, unlimited until `set(cores)`; `add(pid)` moves a process (all its
    threads) into it; `remove()` deletes the cgroup once its processes have exited."""

    def __init__(self, name: str, period_us: int = PERIOD_US):
        if not os.access(CPU_CONTROLLER / "cgroup.procs", os.W_OK):
            raise CpuLimitUnavailable(f"a CPU limit needs a writable cgroup v1 cpu controller at {CPU_CONTROLLER} "
                                      "(run as root on a machine that mounts it)")
        self.path = CPU_CONTROLLER / name
        self.path.mkdir(exist_ok=True)
        self.period_us = period_us
        (self.path / "cpu.cfs_period_us").write_text(str(period_us))
        (self.path / "cpu.cfs_quota_us").write_text("-1")

    def add(self, pid: int):
        (self.path / "cgroup.procs").write_text(str(pid))

    def set(self, cores: float):
        """Caps the group at `cores` from now on (the kernel applies it to running processes)."""
        (self.path / "cpu.cfs_quota_us").write_text(str(max(1000, int(cores * self.period_us))))

    def throttled(self) -> tuple[int, float]:
        """(periods in which the quota ran out, seconds the group was stopped) so far."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_throttled"]), int(stat["throttled_time"]) / 1e9

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass
