"""Index files: `decon index` writes one, `decon detect --reference FILE` maps it; the same
findings as building in place; a file of other options, reference or format is rejected."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from decon.detect.indexfile import (
    FORMAT_VERSION,
    MAGIC,
    open_index,
    reference_digest,
    write_index,
)
from decon.detect.options import DetectOptions
from decon.detect.reference import load_index
from decon.errors import UserError

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]


def write_reference(root: Path, n: int = 60, seed: int = 1) -> tuple[Path, list[dict]]:
    rng = random.Random(seed)
    ref = root / "ref"
    ref.mkdir(parents=True)
    records = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) + str(rng.randrange(500)) for _ in range(rng.randint(3, 30)))
        records.append(
            {
                "eval_key": f"ev{i % 3}",
                "eval_instance_index": i,
                "question": q,
                "answer": f"answer {rng.randrange(99)}",
                "fingerprint": str(i),
            }
        )
    (ref / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return ref, records


def write_training(root: Path, records: list[dict]) -> Path:
    rng = random.Random(2)
    lines = []
    for i in range(200):
        text = " ".join(rng.choice(WORDS) for _ in range(80))
        if i % 4 == 0:
            r = records[i % len(records)]
            text += f" {r['question']} {r['answer']} "
        lines.append(json.dumps({"id": i, "text": text}))
    path = root / "train" / "shard.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def decon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "decon.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("tokenizer", ["word", "cl100k"])
def test_index_file_gives_the_findings_of_the_reference_directory(
    tmp_path: Path, tokenizer: str
) -> None:
    ref, records = write_reference(tmp_path)
    train = write_training(tmp_path, records)
    index = tmp_path / "evals.index"
    built = decon("index", "--reference", str(ref), "--out", str(index), "--tokenizer", tokenizer)
    assert built.returncode == 0, built.stderr
    assert index.read_bytes().startswith(MAGIC)
    reports = {}
    for name, source in (("dir", ref), ("file", index)):
        out = decon(
            "detect",
            str(train),
            "--reference",
            str(source),
            "--tokenizer",
            tokenizer,
            "--workers",
            "2",
            "--report-dir",
            str(tmp_path / name),
        )
        assert out.returncode == 0, out.stderr
        reports[name] = (tmp_path / name / "shard.report.jsonl").read_bytes()
    assert reports["dir"] == reports["file"]
    assert reports["dir"].count(b"\n") >= 40


def test_opened_index_maps_its_arrays_read_only(tmp_path: Path) -> None:
    ref, _ = write_reference(tmp_path)
    options = DetectOptions()
    built = load_index(ref, options)
    path = tmp_path / "x.index"
    write_index(built, path, reference_digest(ref))
    opened = open_index(path, options, reference_digest(ref))
    table = opened.question_ngrams
    assert not table.hashes.flags.writeable  # a view of the mapped file, not a copy
    assert np.array_equal(table.keys, built.question_ngrams.keys)
    assert np.array_equal(opened.ngram_idf, built.ngram_idf)
    assert [it.question_idf_sum for it in opened.items] == [
        it.question_idf_sum for it in built.items
    ]
    assert opened.identity == built.identity
    assert [it.template_key for it in opened.items] == [it.template_key for it in built.items]


def test_stale_or_foreign_index_is_rejected_with_one_line(tmp_path: Path) -> None:
    ref, _ = write_reference(tmp_path)
    options = DetectOptions()
    path = tmp_path / "x.index"
    write_index(load_index(ref, options), path, reference_digest(ref))
    with pytest.raises(UserError, match="other detection options"):
        open_index(path, DetectOptions(ngram_size=4))
    other, _ = write_reference(tmp_path / "other", seed=9)
    with pytest.raises(UserError, match="another reference"):
        open_index(path, options, reference_digest(other))
    # Options that only say how a job runs do not make an index stale.
    open_index(path, DetectOptions(workers=3, purify=True), reference_digest(ref))
    raw = path.read_bytes()
    old = raw.replace(b'"format": %d' % FORMAT_VERSION, b'"format": 0', 1)
    path.write_bytes(old)
    with pytest.raises(UserError, match="index format 0 is not this version"):
        open_index(path, options)
    junk = tmp_path / "junk.index"
    junk.write_bytes(MAGIC + b"\xff" * 40)
    with pytest.raises(UserError, match="damaged index"):
        open_index(junk, options)
    out = decon(
        "detect", str(tmp_path), "--reference", str(path), "--report-dir", str(tmp_path / "r")
    )
    assert out.returncode == 2
    assert "index format 0" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
