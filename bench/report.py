"""Where benchmark results go: bench/results/ (JSON, plots) and one section per benchmark in
BENCHMARKS.md, replaced in place on every run (the Envoy release matrix writes its README table
the same way)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
PREAMBLE = ("# Benchmarks\n\nEvery number here was written by the benchmark named in its section, "
            "run on the project's 2-core machine; each section says how it was measured.\n\n")


def write_section(section: str, name: str, doc: Path = BENCHMARKS):
    """Replaces (or appends) the section between `<!-- name:begin -->` and `<!-- name:end -->`
    of `doc` (BENCHMARKS.md unless another generated table names its document)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else PREAMBLE
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def percentile_bars(ax, by_name: dict[str, dict]):
    """Draws p50, p99 and p99.9 (`p50_ms`, `p99_ms`, `p999_ms` of each entry of `by_name`) as
    grouped bars on a log scale, one colour per name: the latency plot of the balancing
    benchmarks."""
    width = 0.8 / len(by_name)
    for i, (name, m) in enumerate(by_name.items()):
        ax.bar([x + i * width for x in range(3)], [m["p50_ms"], m["p99_ms"], m["p999_ms"]], width=width,
               label=name)
    ax.set_xticks([x + 0.3 for x in range(3)], ["p50", "p99", "p99.9"])
    ax.set_yscale("log")
