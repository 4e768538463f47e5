"""Scoring report directories against a corpus's truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from decon.detect.io import iter_lines
from decon.errors import UserError, guarded_main
from decon_synth import evaluate as ev
from decon_synth import plant
from decon_synth.__main__ import main as synth_main
from decon_synth.benchmarks import normalize_words, read_reference_dir

SPEC = plant.CorpusSpec(
    seed=7,
    benchmarks=("mmlu", "gsm8k", "piqa", "naturalqs_open", "humaneval", "squad", "truthfulqa"),
    items_per_benchmark=6,
    held_out_per_benchmark=2,
    docs_per_kind=10,
    kind_counts={"embedded_long": 4},
    files=4,
    compression="mixed",
    malformed_lines=3,
    long_doc_chars=20_000,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> plant.CorpusManifest:
    return plant.make_corpus(tmp_path_factory.mktemp("corpus"), SPEC)


def exact_detector(corpus, report_dir: Path, layout: str = "tree") -> int:
    """A naive exact matcher (test only): a line is flagged for an item when it contains one of
    the item question's 8-word runs, or the whole question when it is shorter. Writes reports
    like Decon's (0-based training_line, basename training_file)."""
    grams: dict[tuple[str, ...], tuple[str, int]] = {}
    short: list[tuple[str, tuple[str, int]]] = []
    for r in read_reference_dir(corpus.reference_dir):
        key = (r["eval_key"], r["eval_instance_index"])
        words = normalize_words(r["question"])
        if len(words) >= 8:
            for i in range(len(words) - 7):
                grams[tuple(words[i : i + 8])] = key
        else:
            short.append((f" {' '.join(words)} ", key))
    written = 0
    for name in corpus.files:
        path = corpus.train_dir / name
        lines = [line.removesuffix(b"\n") for line in iter_lines(path, keep_bom=True)]
        out = []
        for n, raw in enumerate(lines):
            try:
                text = json.loads(raw)["text"]
            except (ValueError, KeyError):
                continue
            words = normalize_words(text)
            runs = (tuple(words[i : i + 8]) for i in range(len(words) - 7))
            found = {grams[run] for run in runs if run in grams}
            joined = f" {' '.join(words)} "
            found |= {key for s, key in short if s in joined}
            for eval_key, index in sorted(found):
                rec = {
                    "training_file": Path(ev._strip_compression(name)).name,
                    "training_line": n,
                    "eval_key": eval_key,
                    "eval_instance_index": index,
                    "contamination_score": 1.0,
                    "method": "exact-test",
                }
                if layout == "flat":
                    rec["relative_path"] = name
                out.append(json.dumps(rec))
        if out:
            rel = name if layout == "tree" else name.replace("/", "__")
            target = report_dir / f"{rel}{ev.REPORT_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(out) + "\n")
            written += len(out)
    return written


def test_exact_detector_scores_as_expected(corpus, tmp_path):
    assert exact_detector(corpus, tmp_path) > 0
    result = ev.evaluate_dirs(corpus.truth_path, tmp_path)
    for kind in ("verbatim_question", "question_answer", "embedded_long"):
        assert result.recall(kind) == 1.0, kind
        assert result.item_recall(kind) == 1.0, kind
    assert result.recall("heavy_edit") < 1.0
    assert result.false_positives() == 0 and result.precision() == 1.0
    assert result.unresolved_lines == 0 and result.bad_report_lines == 0
    for bucket in ("<8", "8-13", "13-25", "25-50", ">50"):
        assert result.recall("verbatim_question", bucket) == 1.0


def test_flat_reports_resolve_through_a_relative_path_field(corpus, tmp_path):
    exact_detector(corpus, tmp_path, layout="flat")
    result = ev.evaluate_dirs(corpus.truth_path, tmp_path)
    assert result.recall("verbatim_question") == 1.0 and result.unresolved_lines == 0


def _hit(file: str, line: int, key=None, index=None, training_file="") -> ev.ReportHit:
    return ev.ReportHit((file,), training_file, line, key, index, "test")


def test_score_counts_docs_items_and_false_positives(corpus):
    truth = plant.read_truth(corpus.truth_path)
    pos = [t for t in truth if t.positive]
    neg = [t for t in truth if t.kind == "held_out_item"]
    bad = [t for t in truth if t.kind == plant.MALFORMED_KIND]
    hits = [_hit(t.file, t.line, t.eval_key, t.eval_instance_index) for t in pos]
    hits.append(_hit(pos[0].file, pos[0].line, "other", 99))  # second line, same document
    hits.append(_hit(neg[0].file, neg[0].line, "x", 1))
    hits.append(_hit(bad[0].file, bad[0].line, "x", 1))
    hits.append(_hit(pos[0].file, 10_000, "x", 1))  # no such line: unresolved false positive
    result = ev.score(truth, hits)
    assert result.recall() == 1.0 and result.item_recall() == 1.0
    assert result.false_positives("held_out_item") == 1
    assert result.false_positives(plant.MALFORMED_KIND) == 1
    assert result.unresolved_docs == 1 and result.false_positives() == 3
    assert result.precision() == pytest.approx(len(pos) / (len(pos) + 3))
    assert result.precision(neg[0].bucket) < 1.0
    empty = ev.score(truth, [])
    assert empty.recall() == 0.0 and empty.precision() == 1.0
    assert math.isnan(empty.recall("verbatim_question", "no-such-bucket"))


def test_wrong_item_counts_for_the_document_not_the_item(corpus):
    truth = plant.read_truth(corpus.truth_path)
    t = next(t for t in truth if t.kind == "verbatim_question")
    result = ev.score(truth, [_hit(t.file, t.line, t.eval_key, t.eval_instance_index + 1000)])
    assert result.cell("verbatim_question").flagged == 1
    assert result.cell("verbatim_question").right_item == 0


def test_basename_fallback_only_when_unambiguous(corpus):
    truth = plant.read_truth(corpus.truth_path)
    # part-a/shard-000.jsonl and part-b/shard-000.jsonl.gz share the basename shard-000.jsonl.
    t = next(t for t in truth if t.file.startswith("part-a/shard-000"))
    ambiguous = ev.ReportHit(("nowhere",), "shard-000.jsonl", t.line, None, None, "x")
    assert ev.score(truth, [ambiguous]).unresolved_lines == 1
    only = [r for r in truth if r.file == t.file]
    assert ev.score(only, [ambiguous]).unresolved_lines == 0
    # Absolute or root-prefixed paths match on a whole-component suffix.
    prefixed = _hit(f"/data/input/{t.file}", t.line)
    assert ev.score(truth, [prefixed]).unresolved_lines == 0


def test_line_base_one(corpus, tmp_path):
    truth = plant.read_truth(corpus.truth_path)
    t = next(t for t in truth if t.kind == "question_answer")
    report = tmp_path / (t.file + ev.REPORT_SUFFIX)
    report.parent.mkdir(parents=True)
    rec = {"training_file": "f", "training_line": t.line + 1, "eval_key": t.eval_key,
           "eval_instance_index": t.eval_instance_index}  # fmt: skip
    report.write_text(json.dumps(rec) + "\nnot json\n{}\n")
    result = ev.evaluate_dirs(corpus.truth_path, tmp_path, line_base=1)
    assert result.cell("question_answer").right_item == 1
    assert result.bad_report_lines == 2


def test_tables(corpus, tmp_path):
    exact_detector(corpus, tmp_path)
    result = ev.evaluate_dirs(corpus.truth_path, tmp_path)
    text = ev.format_markdown(result, "exact")
    assert text.startswith("### exact")
    assert "| verbatim_question | 10 | 10 | 1.000 | 1.000 |" in text
    assert "| hard_negative_topic (negative) | 10 | 0 | - | - |" in text
    assert "| words | positives |" in text and "| <8 |" in text
    both = ev.compare_table({"a": result, "b": ev.score(plant.read_truth(corpus.truth_path), [])})
    assert "| verbatim_question (recall) | 1.000 | 0.000 |" in both
    assert "| **precision** | 1.000 | 1.000 |" in both
    assert json.loads(json.dumps(result.to_dict()))["precision"] == 1.0


def test_cli_evaluate(corpus, tmp_path, capsys):
    exact_detector(corpus, tmp_path / "exact")
    (tmp_path / "none").mkdir()
    truth = str(corpus.truth_path)
    assert synth_main(["evaluate", "--truth", truth, "--reports", str(tmp_path / "exact")]) == 0
    assert "| verbatim_question | 10 | 10 |" in capsys.readouterr().out
    args = ["evaluate", "--truth", truth, "--reports", f"exact={tmp_path / 'exact'}",
            "--reports", f"none={tmp_path / 'none'}"]  # fmt: skip
    assert synth_main(args) == 0
    assert "| kind | exact | none |" in capsys.readouterr().out
    assert synth_main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["none"]["recall"] == 0.0


def test_cli_missing_report_dir_is_one_line(corpus, tmp_path, capsys):
    rc = guarded_main(
        synth_main,
        ["evaluate", "--truth", str(corpus.truth_path), "--reports", str(tmp_path / "missing")],
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "report directory not found" in err and len(err.strip().splitlines()) == 1


def test_bad_truth_file(tmp_path):
    bad = tmp_path / "truth.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match="truth.jsonl:1"):
        plant.read_truth(bad)
