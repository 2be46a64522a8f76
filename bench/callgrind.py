"""Envoy under callgrind (valgrind's instruction counter, with its L1/last-level cache and branch
predictor simulation), for `make bench-instructions`: how to run it, switch counting on and
off around a window, and read its per-thread output.

The output format is callgrind's (valgrind's docs, "Callgrind Format Specification"): `ob=` and
`fn=` name the object and function the cost lines after them belong to (a name is given once
as `(id) name` and later as `(id)`), a cost line is a position followed by one count per event
(trailing zeros left out), and the line after a `calls=` line is the inclusive cost of that
call, already counted in the callee's own lines.
"""

import re
import subprocess
from collections import defaultdict
from pathlib import Path

#: What callgrind counts, in its order: instructions; data reads and writes; L1 instruction,
#: L1 data read and write misses; the same at the last level; conditional branches and their
#: mispredictions; indirect branches and their mispredictions.
EVENTS = ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw", "Bc", "Bcm", "Bi", "Bim"]


def prefix(out_dir: Path) -> list[str]:
    """The command line that runs a program under callgrind with counting off until switched on
    ([`switch`]), one output file per thread and dump in `out_dir`."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            "--cache-sim=yes", "--branch-sim=yes", f"--callgrind-out-file={out_dir}/cg.%p"]


def switch(pid: int, on: bool):
    """Switches counting in process `pid` on or off."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True,
                   capture_output=True, timeout=120)


def dump(pid: int, label: str):
    """Writes the counts since the last dump (one file per thread) and starts from zero."""
    subprocess.run(["callgrind_control", f"--dump={label}", str(pid)], check=True, capture_output=True,
                   timeout=120)


def dumps(out_dir: Path, pid: int, number: int) -> list[Path]:
    """The files of dump `number` (1-based) of process `pid`, one per thread."""
    return sorted(out_dir.glob(f"cg.{pid}.{number}-*"))


def _name(table: dict[str, str], text: str) -> str:
    """A name of the compressed form: `(id) name` defines id, `(id)` refers to it."""
    m = re.match(r"\((\d+)\)\s*(.*)$", text)
    if not m:
        return text
    if m.group(2):
        table[m.group(1)] = m.group(2)
    return table.get(m.group(1), "?")


def self_costs(path: Path) -> dict[tuple[str, str], list[int]]:
    """Each (object, function)'s own counts in one output file, by [`EVENTS`]."""
    costs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(EVENTS))
    objects: dict[str, str] = {}
    functions: dict[str, str] = {}
    obj = fn = "?"
    inclusive_next = False
    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        if line.startswith("ob="):
            obj = _name(objects, line[3:])
        elif line.startswith("fn="):
            fn = _name(functions, line[3:])
        elif line.startswith("cob="):
            _name(objects, line[4:])
        elif line.startswith("cfn="):
            _name(functions, line[4:])
        elif line.startswith("calls="):
            inclusive_next = True
        elif line[0].isdigit() or line[0] in "+-*":
            if inclusive_next:
                inclusive_next = False
                continue
            counts = costs[(obj, fn)]
            for i, value in enumerate(line.split()[1:]):
                counts[i] += int(value)
    return dict(costs)


def totals(path: Path) -> list[int]:
    """A file's total counts (its `totals:` line)."""
    m = re.search(r"^totals:((?:\s+\d+)+)", path.read_text(errors="replace"), re.M)
    values = [int(v) for v in m.group(1).split()] if m else []
    return values + [0] * (len(EVENTS) - len(values))


def cycle_estimate(counts: dict[str, float]) -> float:
    """Instructions, 10 cycles per L1 miss, 100 per last-level miss and 15 per mispredicted
    branch: a first-order model of what the counts cost a core (cachegrind's documentation
    uses the same form), so that more code to fetch or a worse-predicted path shows where
    instructions alone would not."""
    l1 = counts["I1mr"] + counts["D1mr"] + counts["D1mw"]
    last = counts["ILmr"] + counts["DLmr"] + counts["DLmw"]
    return counts["Ir"] + 10 * l1 + 100 * last + 15 * (counts["Bcm"] + counts["Bim"])
