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
