"""process_file / decon detect: outputs, purify round trips, bad input, determinism."""

from __future__ import annotations

import gzip
import json
import math
import random
import subprocess
import threading
import zlib
from pathlib import Path

import pytest

from decon.cli import main
from decon.detect import pipeline
from decon.detect.detector import load_detector
from decon.detect.io import (
    GzipFromParts,
    deflate_part,
    extract_text,
    iter_lines,
    open_binary_write,
)
from decon.detect.match import Findings
from decon.detect.options import DetectOptions
from decon.detect.pipeline import WorkerPool, detect_chunk, output_names, process_file
from fakes.words import sentence


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    rng = random.Random(0)
    questions = [sentence(rng, 30) for _ in range(8)]
    ref = tmp_path / "ref"
    ref.mkdir()
    lines = ["# comment line"] + [
        json.dumps({"eval_key": "synth", "eval_instance_index": i, "question": q})
        for i, q in enumerate(questions)
    ]
    (ref / "synth.jsonl").write_text("\n".join(lines) + "\n")
    return ref, questions


def training_lines(questions: list[str], n: int = 300) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        text = sentence(rng, 60)
        if i % 37 == 5:
            text += " " + questions[i % len(questions)] + " " + sentence(rng, 10)
        out.append(json.dumps({"id": f"d{i}", "meta": {"body": text}}).encode() + b"\n")
    out.insert(10, b"{not json\n")
    out.insert(20, b'{"id": "x", "meta": {}}\n')
    out.insert(30, b'{"meta": {"body": "\xff\xfe"}}\n')
    return out


@pytest.mark.parametrize("ext", ["", ".gz", ".zst", ".zstd", ".bz2", ".xz"])
def test_purify_round_trip_keeps_compression_and_bytes(tmp_path, corpus, ext) -> None:
    ref, questions = corpus
    lines = training_lines(questions)
    src = tmp_path / f"shard.jsonl{ext}"
    with open_binary_write(src, ext) as fh:
        for line in lines:
            fh.write(line)
    opts = DetectOptions(content_key="meta.body", workers=1)
    detector = load_detector(ref, opts)
    names = output_names(f"sub/shard.jsonl{ext}")
    assert names.cleaned == f"sub/shard.clean.jsonl{ext}"
    report = tmp_path / "out" / names.report
    cleaned = tmp_path / "clean" / names.cleaned
    result = process_file(src, f"sub/shard.jsonl{ext}", detector, opts, report, cleaned)
    assert (result.malformed, result.missing_key, result.undecodable) == (1, 1, 1)
    reports = [json.loads(x) for x in report.read_text().splitlines()]
    bad = {r["training_line"] for r in reports}
    assert result.contaminated_lines == len(bad) == 8
    assert all(r["input_path"] == f"sub/shard.jsonl{ext}" for r in reports)
    assert all(r["doc_id"].startswith("d") for r in reports)
    kept = list(iter_lines(cleaned))
    assert kept == [x for i, x in enumerate(lines) if i not in bad]
    assert not (tmp_path / "out" / names.clean_marker).exists()


def test_clean_file_gets_marker_and_no_report(tmp_path, corpus) -> None:
    ref, _ = corpus
    src = tmp_path / "clean.jsonl"
    src.write_text(json.dumps({"text": "nothing to see here " * 10}) + "\n")
    opts = DetectOptions(workers=1)
    detector = load_detector(ref, opts)
    report = tmp_path / "out" / "clean.report.jsonl"
    result = process_file(src, "clean.jsonl", detector, opts, report, None)
    assert not result.contaminated and not report.exists()
    assert (tmp_path / "out" / "clean.clean").read_bytes() == b""


def test_cancel_leaves_nothing(tmp_path, corpus) -> None:
    ref, questions = corpus
    src = tmp_path / "shard.jsonl"
    src.write_bytes(b"".join(training_lines(questions)))
    opts = DetectOptions(content_key="meta.body", workers=1, chunk_lines=50)
    detector = load_detector(ref, opts)
    out = tmp_path / "out"
    result = process_file(
        src,
        "shard.jsonl",
        detector,
        opts,
        out / "shard.report.jsonl",
        tmp_path / "c" / "x.jsonl",
        cancel=lambda: True,
    )
    assert result.cancelled
    assert not any(p.is_file() for p in tmp_path.rglob("*") if "out" in p.parts or "c" in p.parts)


def test_output_identical_for_any_worker_count(tmp_path, corpus) -> None:
    ref, questions = corpus
    src = tmp_path / "shard.jsonl.gz"
    with open_binary_write(src, ".gz") as fh:
        for line in training_lines(questions, 600):
            fh.write(line)
    outputs = []
    for workers in (1, 3):
        opts = DetectOptions(content_key="meta.body", workers=workers, chunk_lines=40)
        detector = load_detector(ref, opts)
        d = tmp_path / f"w{workers}"
        process_file(src, "shard.jsonl.gz", detector, opts, d / "r.report.jsonl", d / "c.jsonl.gz")
        outputs.append(((d / "r.report.jsonl").read_bytes(), (d / "c.jsonl.gz").read_bytes()))
    assert outputs[0] == outputs[1]  # byte for byte, the gzip header included
    assert outputs[0][0]
    # One gzip member built from 16 chunks' parts: a reader that stops after the first member
    # (Rust's flate2 GzDecoder) still gets every kept line.
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    kept = member.decompress(outputs[0][1])
    assert member.eof and member.unused_data == b""
    flagged = {json.loads(x)["training_line"] for x in outputs[0][0].decode().splitlines()}
    lines = training_lines(questions, 600)
    assert kept == b"".join(x for i, x in enumerate(lines) if i not in flagged)
    assert len(flagged) > 10


def test_chunks_compress_the_kept_lines_of_a_gzip_copy(tmp_path, corpus) -> None:
    """The worker deflates the lines a chunk keeps; the writer only appends the parts."""
    ref, questions = corpus
    lines = training_lines(questions, 80)
    detector = load_detector(ref, DetectOptions(content_key="meta.body"))
    chunk = detect_chunk(detector, "f.jsonl.gz", 0, lines, deflate_kept=True)
    bad = {offset for offset, _ in chunk.reports}
    assert bad and chunk.kept_deflated is not None
    kept = [x for i, x in enumerate(lines) if i not in bad]
    raw = zlib.decompressobj(-zlib.MAX_WBITS)
    assert raw.decompress(chunk.kept_deflated) == b"".join(kept) and not raw.eof  # not final
    assert detect_chunk(detector, "f.jsonl.gz", 0, lines).kept_deflated is None
    path = tmp_path / "parts.gz"
    parts = GzipFromParts(open(path, "wb"))  # noqa: SIM115 - closed by close()
    parts.write_part(chunk.kept_deflated, kept)
    parts.write_part(deflate_part(b""), [])
    parts.write_part(deflate_part(b"last line\n"), [b"last", b" line\n"])
    parts.close()
    # The system's gzip checks the CRC-32 and size of the trailer.
    out = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert out == b"".join(kept) + b"last line\n"


def test_empty_gzip_input_gets_an_empty_valid_cleaned_copy(tmp_path, corpus) -> None:
    ref, _ = corpus
    src = tmp_path / "empty.jsonl.gz"
    with open_binary_write(src, ".gz"):
        pass
    opts = DetectOptions(workers=1)
    cleaned = tmp_path / "c" / "empty.clean.jsonl.gz"
    process_file(src, "empty.jsonl.gz", load_detector(ref, opts), opts, tmp_path / "r", cleaned)
    assert subprocess.run(["gzip", "-t", str(cleaned)]).returncode == 0
    assert gzip.decompress(cleaned.read_bytes()) == b""


def test_gzip_output_bytes_depend_only_on_content(tmp_path) -> None:
    """No file name and no time in the header: a rerun uploads the same bytes (same ETag)."""
    written = []
    for name in ("a/one.jsonl.gz", "b/other-name.jsonl.gz"):
        path = tmp_path / name
        path.parent.mkdir()
        with open_binary_write(path, ".gz") as fh:
            fh.write(b'{"text": "same content"}\n')
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert gzip.decompress(written[0]) == b'{"text": "same content"}\n'


def test_batches_do_not_change_a_chunk_result(corpus, monkeypatch) -> None:
    ref, questions = corpus
    lines = training_lines(questions, 300)
    detector = load_detector(ref, DetectOptions(content_key="meta.body"))
    whole = detect_chunk(detector, "f.jsonl", 0, lines)
    monkeypatch.setattr(pipeline, "BATCH_CHARS", 2000)  # a few texts per batch
    assert detect_chunk(detector, "f.jsonl", 0, lines) == whole
    assert whole.reports and whole.malformed == 1


def test_one_worker_pool_serves_a_cancelled_file_and_then_the_next(tmp_path, corpus) -> None:
    ref, questions = corpus
    src = tmp_path / "shard.jsonl"
    src.write_bytes(b"".join(training_lines(questions, 600)))
    opts = DetectOptions(content_key="meta.body", workers=2, chunk_lines=40)
    detector = load_detector(ref, opts)
    alone = tmp_path / "alone"
    process_file(src, "shard.jsonl", detector, opts, alone / "r.report.jsonl", None)
    calls = iter(range(10**6))
    with WorkerPool(detector, 2) as pool:
        cancelled = process_file(
            src,
            "shard.jsonl",
            detector,
            opts,
            tmp_path / "x" / "r.report.jsonl",
            tmp_path / "x" / "c.jsonl",
            cancel=lambda: next(calls) >= 3,  # stops after a few chunks were submitted
            pool=pool,
        )
        shared = tmp_path / "shared"
        done = process_file(
            src, "shard.jsonl", detector, opts, shared / "r.report.jsonl", None, pool=pool
        )
    assert cancelled.cancelled
    assert not any(p.is_file() for p in (tmp_path / "x").rglob("*"))
    assert not done.cancelled and done.matches > 0
    # the chunks left in the pool by the cancelled file do not leak into the next file
    assert (shared / "r.report.jsonl").read_bytes() == (alone / "r.report.jsonl").read_bytes()


class BlockedDetector:
    """A detector whose workers never finish a document (until the pool is stopped)."""

    def __init__(self, options: DetectOptions) -> None:
        self.options = options
        self.stats = None

    def detect_batch(self, texts: list[str]) -> list[Findings]:
        threading.Event().wait()
        return [Findings([], True) for _ in texts]


def test_cancel_is_noticed_while_chunks_are_still_running(tmp_path) -> None:
    src = tmp_path / "shard.jsonl"
    src.write_bytes(b"".join(b'{"text": "line %d"}\n' % i for i in range(50)))
    opts = DetectOptions(workers=2, chunk_lines=10)
    detector = BlockedDetector(opts)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with WorkerPool(detector, 2) as pool:  # type: ignore[arg-type]
        result = process_file(
            src, "shard.jsonl", detector, opts, tmp_path / "r.report.jsonl", None,  # type: ignore[arg-type]
            cancel=stop.is_set, pool=pool,
        )  # fmt: skip
    assert result.cancelled
    assert not any(p.is_file() for p in tmp_path.iterdir() if p != src)


def test_decon_detect_cli_same_names_in_folders_do_not_collide(tmp_path, corpus, capsys) -> None:
    ref, questions = corpus
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "part.jsonl").write_bytes(
            b"".join(training_lines(questions, 80))
        )
    out = tmp_path / "reports"
    code = main(
        [
            "detect",
            str(tmp_path / "in"),
            "--reference",
            str(ref),
            "--report-dir",
            str(out),
            "--content-key",
            "meta.body",
            "--workers",
            "2",
            "--cleaned-dir",
            str(tmp_path / "cl"),
        ]
    )
    assert code == 0
    assert (out / "a" / "part.report.jsonl").exists() and (out / "b" / "part.report.jsonl").exists()
    assert (tmp_path / "cl" / "a" / "part.clean.jsonl").exists()
    text = capsys.readouterr().out
    assert "synth:" in text and "MB/s" in text and "1 malformed" in text


def test_decon_detect_cli_bad_input_is_one_line(tmp_path, corpus, capsys) -> None:
    ref, _ = corpus
    code = main(
        [
            "detect",
            str(tmp_path / "missing"),
            "--reference",
            str(ref),
            "--report-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    code = main(
        [
            "detect",
            str(tmp_path),
            "--reference",
            str(ref),
            "--report-dir",
            str(tmp_path / "o"),
            "--ngram-size",
            "0",
        ]
    )
    assert code != 0 and "ngram_size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "text", "problem", "doc_id"),
    [
        (b'{"id": 7, "text": "caf\\u00e9"}\n', "café", "", 7),
        (b'{"id": 1, "id": 2, "text": "last key wins"}', "last key wins", "", 2),
        # orjson rejects these; the stdlib reads them, as before.
        (b'{"id": "s", "text": "lone \\ud800 surrogate"}', "lone \ud800 surrogate", "", "s"),
        (b'{"id": NaN, "text": "t"}', "t", "", None),  # NaN: compared below with math.isnan
        (b'{"id": %d, "text": "t"}' % 10**29, "t", "", 10**29),  # beyond 64 bits
        (b'{"text": "\xff"}', None, "undecodable", None),
        (b'{"text": "a\tb"}', None, "malformed", None),  # a raw tab inside a string
        (b"[1, 2]", None, "malformed", None),
        (b'{"id": 3, "other": "x"}', None, "missing_key", 3),
        (b"  \n", None, "blank", None),
    ],
)
def test_extract_text_reads_what_the_json_module_reads(line, text, problem, doc_id) -> None:
    got = extract_text(line, "text")
    assert (got.text, got.problem) == (text, problem)
    if isinstance(got.doc_id, float):
        assert math.isnan(got.doc_id)
    else:
        assert got.doc_id == doc_id and type(got.doc_id) is type(doc_id)
