"""minhash and toxic through the normal file pipeline (`decon detect`): compressed inputs,
reports and purified copies, identical outputs for 1 and 2 workers (across and within files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decon.cli import main as decon_main
from decon.detect.io import iter_lines
from decon_synth.plant import CorpusSpec, make_corpus
from decon_synth.wordvec import write_corpus_vectors

REQUIRED = (
    "training_file",
    "training_line",
    "eval_key",
    "eval_line",
    "eval_instance_index",
    "split",
    "fingerprint",
    "reference_file",
    "eval_question_text",
    "contamination_start_idx",
    "contamination_end_idx",
    "training_overlap_text",
    "contamination_score",
    "method",
)
SCORE_FIELD = {"minhash": "jaccard_similarity", "toxic": "overlap_ratio"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    spec = CorpusSpec(seed=3, docs_per_kind=4, files=4, compression="mixed", malformed_lines=3)
    manifest = make_corpus(tmp_path_factory.mktemp("corpus"), spec)
    vec = manifest.root / "words.vec"
    write_corpus_vectors(manifest.root, vec)
    return manifest, vec


def run_detect(corpus, out: Path, mode: str, workers: int) -> None:
    manifest, vec = corpus
    code = decon_main(
        [
            "detect",
            str(manifest.train_dir),
            "--reference",
            str(manifest.reference_dir),
            "--report-dir",
            str(out / "reports"),
            "--cleaned-dir",
            str(out / "cleaned"),
            "--mode",
            mode,
            "--toxic-vectors",
            str(vec),
            "--eval-min-token-length",
            "0",
            "--workers",
            str(workers),
            "--chunk-lines",
            "4",
        ]
    )
    assert code == 0


def tree(root: Path) -> dict[str, bytes]:
    """Every output file's bytes (compressed outputs are deterministic too)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["minhash", "toxic"])
def test_mode_reports_and_purifies_identically_for_any_worker_count(corpus, tmp_path, mode):
    manifest, _ = corpus
    run_detect(corpus, tmp_path / "one", mode, 1)
    run_detect(corpus, tmp_path / "two", mode, 2)
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert one == two
    reports = {k: v for k, v in one.items() if k.endswith(".report.jsonl")}
    assert reports, "no file was found contaminated"
    truth = {(t["file"], t["line"]): t for t in map(json.loads, manifest.truth_path.open())}
    flagged: dict[str, set[int]] = {}
    for name, data in reports.items():
        rel = name.removeprefix("reports/").removesuffix(".report.jsonl")
        src = next(f for f in manifest.files if f.startswith(rel + ".jsonl"))
        for line in filter(None, data.decode().splitlines()):
            rec = json.loads(line)
            assert all(k in rec for k in REQUIRED), sorted(set(REQUIRED) - set(rec))
            assert rec["method"] == mode and SCORE_FIELD[mode] in rec
            assert rec["contamination_start_idx"] <= rec["contamination_end_idx"]
            assert truth[(src, rec["training_line"])]["positive"]
            flagged.setdefault(src, set()).add(rec["training_line"])
    # Purified copies keep every other line (malformed ones included), in order, compressed
    # like their input.
    for src in manifest.files:
        original = list(iter_lines(manifest.train_dir / src))
        base = src.split(".jsonl")[0]
        cleaned_name = next(k for k in one if k.startswith(f"cleaned/{base}.clean.jsonl"))
        cleaned = list(iter_lines(tmp_path / "one" / cleaned_name))
        gone = flagged.get(src, set())
        assert cleaned == [x for i, x in enumerate(original) if i not in gone]
