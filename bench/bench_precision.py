"""`make bench`: precision of a real-size reference over natural text, per mode.

Reference: Decon's bundled evals (86,133 records of gsm8k, mmlu, agi_eval) when on this machine,
else every item of the installed benchmarks (`decon_synth.benchmarks.real_reference_dir`).
No threshold was chosen on either; of their benchmarks only gsm8k is in the tuning half of
`tests/detect/test_recall.py`, so rows are also given per benchmark.

Training text: `BENCH_PRECISION_DOCS` clean documents (prose, code, tables, licences, news,
reviews; `decon_synth.text.mixed_documents`) and `BENCH_PRECISION_PLANTED` documents that each
hold one reference record (question, then answer) as a paragraph. A flagged clean document is a
false positive; a planted document counts as found only with its own item reported (its
instance, or its fingerprint: a benchmark may hold one item twice).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from decon.detect.detector import load_detector
from decon.detect.options import DetectOptions
from decon.detect.pipeline import FileTask, process_files
from decon.detect.records import ReferenceStats, read_records
from decon_synth.benchmarks import real_reference_dir
from decon_synth.plant import plant_records
from decon_synth.text import mixed_documents


def write_shard(path: Path, texts: list[str]) -> int:
    data = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    path.write_text(data)
    return len(data)


def report_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def main() -> int:
    n_clean = int(os.environ.get("BENCH_PRECISION_DOCS", "6000"))
    n_planted = int(os.environ.get("BENCH_PRECISION_PLANTED", "300"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = real_reference_dir(root / "reference")
        records = [r for _, _, r in read_records(reference, ReferenceStats())]
        chosen = random.Random(5).sample(records, n_planted)
        planted = plant_records(chosen, mixed_documents(n_planted, seed=31), seed=5)
        size = write_shard(root / "clean.jsonl", mixed_documents(n_clean, seed=29))
        size += write_shard(root / "planted.jsonl", planted)
        keys = Counter(r["eval_key"] for r in chosen)
        print(
            f"precision: {len(records)} reference records ({reference.name}); "
            f"{n_clean} clean + {n_planted} planted docs, {size / 1e6:.1f} MB; "
            f"planted per benchmark: {dict(sorted(keys.items()))}"
        )
        for compat in ("none", "decon"):
            for tok in ("word", "cl100k"):
                run(root, reference, chosen, compat, tok)
    return 0


def run(root: Path, reference: Path, chosen: list[dict], compat: str, tok: str) -> None:
    opts = DetectOptions(tokenizer=tok, compat=compat, workers=os.cpu_count() or 1)
    t0 = time.perf_counter()
    detector = load_detector(reference, opts)
    load_secs = time.perf_counter() - t0
    out = root / f"out-{compat}-{tok}"
    tasks = [
        FileTask(root / f"{name}.jsonl", f"{name}.jsonl", out / f"{name}.report.jsonl")
        for name in ("clean", "planted")
    ]
    list(process_files(tasks, detector, opts))
    clean = report_lines(out / "clean.report.jsonl")
    planted = report_lines(out / "planted.report.jsonl")
    false_docs = {x["training_line"] for x in clean}
    flagged = {x["training_line"] for x in planted}
    # Its instance, or its fingerprint: mmlu holds some items twice, and a duplicate is
    # reported under the first instance.
    reported = {(x["training_line"], x["eval_key"], x["eval_instance_index"]) for x in planted}
    reported |= {(x["training_line"], x["fingerprint"]) for x in planted}
    found = [
        i
        for i, r in enumerate(chosen)
        if {(i, r["eval_key"], r["eval_instance_index"]), (i, r["fingerprint"])} & reported
    ]
    precision = len(flagged) / max(len(flagged) + len(false_docs), 1)
    by_key = Counter(chosen[i]["eval_key"] for i in found)
    lines = len(clean) + len(planted)
    print(
        f"compat={compat:5s} {tok:6s}: false-positive docs {len(false_docs)}, "
        f"doc precision {precision:.3f}, planted found {len(found)}/{len(chosen)} "
        f"({dict(sorted(by_key.items()))}), {lines / max(len(flagged) + len(false_docs), 1):.2f} "
        f"report lines per flagged doc; reference load {load_secs:.0f} s",
        flush=True,
    )
    for x in clean[:3]:
        print(f"    false positive: {x['eval_key']} {x['eval_question_text'][:60]!r}")


if __name__ == "__main__":
    sys.exit(main())
