"""Files that cannot be checked: a wrong content key, corrupt or mislabelled compression, a
BOM. Each fails with one line naming it (and never gets a `.clean` marker), or is read right."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from decon.cli import main
from decon.detect.detector import load_detector
from decon.detect.io import iter_lines
from decon.detect.options import DetectOptions
from decon.detect.pipeline import FileTask, process_file, process_files
from fakes.detect_corpus import docs


@pytest.mark.parametrize("workers", [1, 2])
def test_no_line_with_the_content_key_fails_and_is_never_clean(tmp_path, corpus, workers) -> None:
    ref, questions = corpus
    src = tmp_path / "shard.jsonl"
    src.write_bytes(docs(questions, key="text"))
    opts = DetectOptions(content_key="body", workers=workers)
    detector = load_detector(ref, opts)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / "shard.clean"
    stale.write_bytes(b"")  # an earlier run's marker must not survive a failed run
    report = tmp_path / "out" / "shard.report.jsonl"
    result = process_file(src, "shard.jsonl", detector, opts, report, tmp_path / "c.jsonl")
    assert result.error.startswith("shard.jsonl: no line has a string at content key 'body'")
    assert "keys found: id, text, url" in result.error
    assert result.missing_key == 40 and result.with_text == 0
    assert not report.exists() and not stale.exists() and not (tmp_path / "c.jsonl").exists()
    assert not result.cancelled


def test_a_content_key_holding_no_string_names_its_type(tmp_path, corpus) -> None:
    ref, _ = corpus
    src = tmp_path / "shard.jsonl"
    src.write_text('{"text": {"en": "x"}}\n' * 3)
    opts = DetectOptions(workers=1)
    result = process_file(
        src, "shard.jsonl", load_detector(ref, opts), opts, tmp_path / "r.report.jsonl", None
    )
    assert "keys found: text (dict)" in result.error


def test_partly_keyless_files_fail_above_the_limit(tmp_path, corpus) -> None:
    ref, questions = corpus
    lines = docs(questions).splitlines(keepends=True)
    keyless = [json.dumps({"id": i, "body": "x"}).encode() + b"\n" for i in range(10)]
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"".join(lines + keyless))  # 10 of 50 lack the key
    for limit, fails in ((0.5, False), (0.1, True)):
        opts = DetectOptions(workers=1, max_keyless_fraction=limit)
        report = tmp_path / f"{limit}.report.jsonl"
        result = process_file(src, "mixed.jsonl", load_detector(ref, opts), opts, report, None)
        assert result.missing_key == 10 and result.with_text == 40
        assert bool(result.error) == fails, result.error
        assert report.exists() != fails
        if fails:
            assert "10 of 50 lines" in result.error and "max_keyless_fraction=0.1" in result.error


def test_lines_that_are_no_json_objects_fail_the_file(tmp_path, corpus) -> None:
    ref, _ = corpus
    src = tmp_path / "pretty.json"
    src.write_text(json.dumps({"text": "a", "id": 1}, indent=2) + "\n")
    opts = DetectOptions(workers=1)
    result = process_file(
        src, "pretty.json", load_detector(ref, opts), opts, tmp_path / "p.report.jsonl", None
    )
    assert result.error == "pretty.json: no line is a JSON object (4 malformed, 0 not UTF-8)"
    assert not (tmp_path / "pretty.clean").exists()


def corrupt_inputs(folder: Path, questions: list[str]) -> dict[str, str]:
    """Corrupt files in `folder`: name -> a phrase its error line must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = gzip.compress(docs(questions))
    (folder / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (folder / "plain.jsonl.gz").write_bytes(docs(questions))
    (folder / "plain.jsonl.zst").write_bytes(docs(questions))
    (folder / "plain.jsonl.bz2").write_bytes(docs(questions))
    (folder / "plain.jsonl.xz").write_bytes(docs(questions))
    return {
        "truncated.jsonl.gz": "truncated .gz",
        "plain.jsonl.gz": "not a valid .gz file",
        "plain.jsonl.zst": "not a valid .zst file",
        "plain.jsonl.bz2": "not a valid .bz2 file",
        "plain.jsonl.xz": "not a valid .xz file",
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_files_fail_one_by_one_and_the_good_ones_get_outputs(
    tmp_path, corpus, workers
) -> None:
    ref, questions = corpus
    expected = corrupt_inputs(tmp_path / "in", questions)
    (tmp_path / "in" / "good.jsonl").write_bytes(docs(questions))
    opts = DetectOptions(workers=workers, chunk_lines=8)
    tasks = [
        FileTask(p, p.name, tmp_path / "out" / (p.name.split(".")[0] + p.suffix + ".report.jsonl"))
        for p in sorted((tmp_path / "in").iterdir())
    ]
    results = {r.rel_name: r for r in process_files(tasks, load_detector(ref, opts), opts)}
    assert results["good.jsonl"].error == "" and results["good.jsonl"].contaminated_lines == 2
    for name, phrase in expected.items():
        assert phrase in results[name].error and str(tmp_path / "in" / name) in results[name].error
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["good.jsonl.report.jsonl"]


def test_a_bom_is_skipped_on_input_and_reference_and_kept_in_cleaned_copies(
    tmp_path, corpus
) -> None:
    ref, questions = corpus
    bom = b"\xef\xbb\xbf"
    (ref / "synth.jsonl").write_bytes(bom + (ref / "synth.jsonl").read_bytes())
    src = tmp_path / "bom.jsonl"
    first = json.dumps({"text": "lead in words " + questions[0]}).encode() + b"\n"
    src.write_bytes(bom + first + docs(questions))
    opts = DetectOptions(workers=1)
    detector = load_detector(ref, opts)
    assert detector.stats.malformed == 0
    report = tmp_path / "bom.report.jsonl"
    cleaned = tmp_path / "bom.clean.jsonl"
    result = process_file(src, "bom.jsonl", detector, opts, report, cleaned)
    assert result.malformed == 0
    lines = {json.loads(x)["training_line"] for x in report.read_text().splitlines()}
    assert lines == {0, 4, 21}
    kept = list(iter_lines(cleaned, keep_bom=True))
    assert kept == [x for i, x in enumerate(iter_lines(src, keep_bom=True)) if i not in lines]


def test_decon_detect_goes_on_after_bad_files_and_exits_1(tmp_path, corpus, capsys) -> None:
    ref, questions = corpus
    corrupt_inputs(tmp_path / "in", questions)
    (tmp_path / "in" / "good.jsonl").write_bytes(docs(questions))
    (tmp_path / "in" / "wrongkey.jsonl").write_bytes(docs(questions, key="content"))
    out = tmp_path / "reports"
    argv = ["detect", str(tmp_path / "in"), "--reference", str(ref), "--report-dir", str(out)]
    code = main([*argv, "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err + captured.out
    errors = [x for x in captured.err.splitlines() if x.startswith("decon: ")]
    assert len(errors) == 7  # six bad files, then the count
    assert any("wrongkey.jsonl: no line has a string at content key 'text'" in x for x in errors)
    assert errors[-1].startswith("decon: 6 of 7 files failed")
    assert (out / "good.report.jsonl").exists()
    assert not (out / "wrongkey.clean").exists()
    summary = json.loads((out / "detect-summary.json").read_text())
    by_file = {f["file"]: f for f in summary["files"]}
    assert by_file["good.jsonl"]["status"] == "contaminated"
    assert by_file["wrongkey.jsonl"]["status"] == "failed"
    assert by_file["wrongkey.jsonl"]["missing_key"] == 40
    assert summary["totals"]["failed_files"] == 6 and summary["totals"]["missing_key"] == 40
