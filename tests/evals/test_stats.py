"""decon evals stats: figures per eval, and skip counts equal to the detector's own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from decon.cli import main
from decon.detect.detector import load_detector
from decon.detect.options import DetectOptions
from decon.evals.extract import fingerprint

LONG_Q = (
    "which of the following gases makes up most of the atmosphere of the planet earth "
    "at sea level on an ordinary day"
)


def rec(eval_key: str, i: int, question: str, answer: str | None = None,
        passage: str | None = None, fp: str | None = None) -> dict:  # fmt: skip
    r: dict = {"eval_key": eval_key, "eval_instance_index": i, "split": "test",
               "question": question}  # fmt: skip
    if passage is not None:
        r["passage"] = passage
    if answer is not None:
        r["answer"] = answer
    r["doc_id"] = i + 1
    r["fingerprint"] = fp or fingerprint(passage, question, answer)
    return r


def reference(root: Path) -> Path:
    """Two evals with every kind of record detection skips."""
    sciq = [
        rec("sciq", 0, LONG_Q, "nitrogen"),
        rec("sciq", 0, LONG_Q, "oxygen"),  # another choice of the same item
        rec("sciq", 1, LONG_Q, "nitrogen"),  # same text, same fingerprint: a duplicate
        rec("sciq", 2, "what is the boiling point of water", "100 degrees"),  # short
        rec("sciq", 3, "", "an answer without a question " * 5),  # no question
        rec("sciq", 4, "go go go go go go go go go go go go go go go go go go go go go go"),
    ]
    squad = [
        rec("squad", 0, "what sits on top of the main building at notre dame university",
            "a golden statue", "Atop the Main Building's gold dome is a golden statue of the "
            "Virgin Mary. Immediately in front of the Main Building is a copper statue."),
        rec("squad", 1, "who founded the university of notre dame in indiana",
            "father edward sorin", "The university was founded in 1842 by Father Sorin."),
    ]  # fmt: skip
    root.mkdir()
    (root / "sciq_test-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sciq))
    (root / "squad_test-1.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in squad) + "{not json\n"
    )
    return root


def stats_json(capsys, *args: str) -> dict:
    assert main(["evals", "stats", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def detect_line(tmp_path: Path, ref: Path, capsys, *options: str) -> dict[str, int]:
    """The counts of `decon detect`'s `reference:` line."""
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"text": "nothing to see here at all"}) + "\n")
    report = tmp_path / f"report{len(list(tmp_path.iterdir()))}"
    main(["detect", str(train), "--reference", str(ref), "--report-dir", str(report), *options])
    out = capsys.readouterr().out
    m = re.search(
        r"reference: (\d+) items from (\d+) files \(skipped: (\d+) short, (\d+) few words, "
        r"(\d+) duplicates, (\d+) malformed",
        out,
    )
    assert m, out
    keys = ("indexed", "files", "too_short", "few_unique_words", "duplicate", "malformed")
    return dict(zip(keys, map(int, m.groups()), strict=True))


def from_stats(data: dict) -> dict[str, int]:
    return {"indexed": data["indexed"], "files": data["files"], **{
        k: data["skipped"][k] for k in ("too_short", "few_unique_words", "duplicate")
    }, "malformed": data["malformed"]}  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--compat", "decon"),
        ("--compat", "decon", "--eval-min-token-length", "10", "--no-eval-dedup"),
        ("--eval-min-unique-word-count", "12", "--no-index-answers"),
    ],
)
def test_skip_counts_equal_the_detectors(tmp_path, capsys, options):
    ref = reference(tmp_path / "ref")
    data = stats_json(capsys, str(ref), *options)
    assert from_stats(data) == detect_line(tmp_path, ref, capsys, *options)
    # per eval, the index's own counts
    opts = DetectOptions()
    flags = dict(zip(options[::2], options[1::2], strict=False))
    if "--compat" in flags:
        opts.compat = flags["--compat"]
    if "--eval-min-token-length" in flags:
        opts.eval_min_token_length = int(flags["--eval-min-token-length"])
    if "--eval-min-unique-word-count" in flags:
        opts.eval_min_unique_word_count = int(flags["--eval-min-unique-word-count"])
    opts.eval_dedup = "--no-eval-dedup" not in options
    opts.index_answers = "--no-index-answers" not in options
    stats = load_detector(ref, opts).stats
    for name, ev in data["evals"].items():
        want = stats.skipped_per_eval.get(name, {})
        assert {k: v for k, v in ev["skipped"].items() if v} == want, name
        assert ev["indexed"] == stats.per_eval.get(name, 0)


def test_figures_per_eval(tmp_path, capsys):
    ref = reference(tmp_path / "ref")
    data = stats_json(capsys, str(ref), "--compat", "decon")
    sciq, squad = data["evals"]["sciq"], data["evals"]["squad"]
    assert (sciq["records"], sciq["with_answer"], sciq["with_passage"]) == (6, 5, 0)
    assert (squad["records"], squad["with_answer"], squad["with_passage"]) == (2, 2, 2)
    # word tokens of the normalised questions: 22 (x3), 7, 22; the empty one has none
    assert sciq["lengths"]["question"] == {"min": 7, "mean": 19.0, "max": 22}
    assert sciq["lengths"]["passage"] == {"min": None, "mean": None, "max": None}
    assert sciq["skipped"] == {"too_short": 1, "few_unique_words": 1, "duplicate": 1,
                               "no_question": 1}  # fmt: skip
    assert sciq["indexed"] == 2 and squad["indexed"] == 2
    assert data["records"] == 8 and data["malformed"] == 1
    text_rc = main(["evals", "stats", str(ref), "--compat", "decon"])
    out = capsys.readouterr()
    assert text_rc == 0
    assert "min/mean/max in word tokens" in out.out
    assert re.search(r"sciq\s+6\s+5\s+0\s+7/19\.0/22\s+1/\S+/\d+\s+-\s+1\s+1\s+1\s+1\s+2", out.out)
    assert "detection indexes 4 items (skipped: 1 short, 1 few words, 1 duplicates" in out.out
    assert "1 malformed line(s) skipped" in out.err
    # BPE lengths: more tokens than words
    bpe = stats_json(capsys, str(ref), "--compat", "decon", "--tokenizer", "cl100k")
    assert bpe["evals"]["squad"]["lengths"]["passage"]["max"] > 20


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["evals", "stats", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evals", "stats", str(tmp_path / "empty")]) == 2
    assert "no eval record files" in capsys.readouterr().err
    assert main(["evals", "stats", str(tmp_path / "empty"), "--tokenizer", "bert"]) == 2
    assert "tokenizer: must be word, p50k or cl100k" in capsys.readouterr().err
