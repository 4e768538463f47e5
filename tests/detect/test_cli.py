"""`decon detect` as a user sees it: progress while it works, a summary file at the end."""

from __future__ import annotations

import json
import re
import sys

from decon.cli import main
from decon.detect import cli as detect_cli
from fakes.detect_corpus import docs


def detect(tmp_path, ref, *extra: str) -> int:  # type: ignore[no-untyped-def]
    argv = ["detect", str(tmp_path / "in"), "--reference", str(ref)]
    return main([*argv, "--report-dir", str(tmp_path / "out"), "--workers", "1", *extra])


def test_progress_lines_within_and_across_files_when_not_a_terminal(
    tmp_path,
    corpus,  # noqa: F811
    capsys,
    monkeypatch,
) -> None:
    ref, questions = corpus
    (tmp_path / "in").mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / "in" / name).write_bytes(docs(questions))
    monkeypatch.setattr(detect_cli, "PROGRESS_LINE_SECONDS", 0.0)
    assert detect(tmp_path, ref, "--chunk-lines", "10") == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("progress: ")]
    # four chunks per file, then each file's end
    assert len(lines) == 10
    assert "files 0/2, matches 1" in lines[0] and "files 2/2, matches 4" in lines[-1]
    done = [int(re.search(r"(\d+)%", x).group(1)) for x in lines]  # type: ignore[union-attr]
    assert done == sorted(done) and 0 < done[0] < done[-1]
    assert "100%" in lines[-1] and "B/s" in lines[-1]


def test_no_progress_lines_before_the_interval(tmp_path, corpus, capsys) -> None:  # noqa: F811
    ref, questions = corpus
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(docs(questions))
    assert detect(tmp_path, ref) == 0
    assert "progress: " not in capsys.readouterr().err


def test_a_terminal_gets_a_bar_with_files_and_matches(
    tmp_path,
    corpus,  # noqa: F811
    capsys,
    monkeypatch,
) -> None:
    ref, questions = corpus
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(docs(questions))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert detect(tmp_path, ref) == 0
    err = capsys.readouterr().err
    assert "100%" in err and "files 1/1, matches 2" in err and "B/s" in err


def test_summary_file_has_per_file_counts(tmp_path, corpus, capsys) -> None:  # noqa: F811
    ref, questions = corpus
    (tmp_path / "in").mkdir()
    lines = docs(questions) + b"{oops\n" + b'{"id": 9}\n' + b'{"text": "\xff"}\n'
    (tmp_path / "in" / "a.jsonl").write_bytes(lines)
    assert detect(tmp_path, ref) == 0
    summary = json.loads((tmp_path / "out" / "detect-summary.json").read_text())
    (entry,) = summary["files"]
    assert entry["file"] == "a.jsonl" and entry["status"] == "contaminated"
    assert (entry["malformed"], entry["missing_key"], entry["undecodable"]) == (1, 1, 1)
    assert entry["lines"] == 43 and entry["with_text"] == 40 and entry["matches"] == 2
    assert summary["totals"]["files"] == 1 and summary["per_eval"] == {"synth": 2}
