"""`make fuzz`: runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 60)
and reports executions and coverage per target to bench/results/fuzz.json. A crash stops the run
with libFuzzer's report and the input saved under fuzz/artifacts/<target>/: make it a fix and a
regression test."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["s3_request", "sigv4_canonical", "aws_chunked", "config"]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "60"))


def run(target: str) -> dict:
    corpus = ROOT / "fuzz" / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}")
    dictionary = ROOT / "fuzz" / f"{target}.dict"
    extra = [f"-dict={dictionary}"] if dictionary.exists() else []
    done = subprocess.run(
        ["cargo", "+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", "--target-dir", "target/fuzz", target, str(corpus),
         "--", f"-max_total_time={SECONDS}", "-print_final_stats=1", "-max_len=4096", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        print(output[-6000:])
        raise SystemExit(f"fuzz target {target} failed (exit {done.returncode}); see fuzz/artifacts/{target}/")
    executions = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    progress = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", output)
    cov, features, corpus_size = (int(x) for x in progress[-1]) if progress else (0, 0, 0)
    return {"seconds": SECONDS, "executions": int(executions.group(1)) if executions else None,
            "coverage_edges": cov, "features": features, "corpus_inputs": corpus_size}


def main():
    results = {}
    for target in TARGETS:
        results[target] = run(target)
        print(target, results[target], flush=True)
    out = ROOT / "bench" / "results" / "fuzz.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
