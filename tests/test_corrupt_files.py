"""Every command over a folder of corrupt files: one line naming the problem, never a
traceback, a non-zero exit."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

DECON = str(Path(sys.executable).with_name("decon"))
QUESTION = "which seven planets orbit the distant yellow star beyond the nebula in the old atlas"


def decon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DECON, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def docs(n: int = 20) -> bytes:
    return b"".join(
        json.dumps({"id": i, "text": f"words {i} " + (QUESTION if i == 2 else "")}).encode() + b"\n"
        for i in range(n)
    )


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """inputs/ (one good file, the rest corrupt), ref/ and badref/, configs/ (corrupt)."""
    root = tmp_path_factory.mktemp("corrupt")
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "good.jsonl").write_bytes(docs())
    whole = gzip.compress(docs())
    (inputs / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (inputs / "not-gzip.jsonl.gz").write_bytes(docs())
    (inputs / "not-zstd.jsonl.zst").write_bytes(docs())
    (inputs / "not-bz2.jsonl.bz2").write_bytes(docs())
    (inputs / "not-xz.jsonl.xz").write_bytes(b"\xfd7zXZ\x00garbage")
    (inputs / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (inputs / "wrong-key.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    ref = root / "ref"
    ref.mkdir()
    record = {"eval_key": "atlas", "eval_instance_index": 0, "question": QUESTION}
    (ref / "atlas.jsonl").write_text(json.dumps(record) + "\n")
    badref = root / "badref"
    badref.mkdir()
    good_ref = gzip.compress((ref / "atlas.jsonl").read_bytes() * 50)
    (badref / "atlas.jsonl.gz").write_bytes(good_ref[: len(good_ref) - 9])
    configs = root / "configs"
    configs.mkdir()
    (configs / "latin1.yaml").write_bytes(b"job: {id: caf\xe9}\n")
    (configs / "gzipped.yaml").write_bytes(gzip.compress(b"job: {id: j}\n"))
    (configs / "binary.yaml").write_bytes(bytes(range(256)))
    (configs / "bad-yaml.yaml").write_text("job: {id: [\n")
    (configs / "a-list.yaml").write_text("- 1\n- 2\n")
    reports = root / "reports"
    reports.mkdir()
    (reports / "x.report.jsonl").write_bytes(b"\xff\xfe\x00garbage\n{not json\n")
    (reports / "y.report.jsonl").write_bytes(whole)
    return root


def one_line_no_traceback(out: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.returncode != 0
    errors = [x for x in out.stderr.splitlines() if x.strip()]
    assert errors and all(x.startswith("decon: ") for x in errors), out.stderr
    return errors


def test_detect_names_each_corrupt_input_and_goes_on(fixtures: Path) -> None:
    out = decon(
        "detect", "inputs", "--reference", "ref", "--report-dir", "out", "--workers", "2",
        cwd=fixtures,
    )  # fmt: skip
    errors = one_line_no_traceback(out)
    assert out.returncode == 1
    named = {x.split(":")[1].strip() for x in errors[:-1]}
    corrupt = {p.name for p in (fixtures / "inputs").iterdir()} - {"good.jsonl"}
    assert {Path(n).name for n in named} == corrupt
    assert errors[-1].startswith(f"decon: {len(corrupt)} of {len(corrupt) + 1} files failed")
    assert [p.name for p in (fixtures / "out").iterdir() if p.name.startswith("good.")]


def test_detect_names_a_truncated_reference_file(fixtures: Path) -> None:
    out = decon("detect", "inputs", "--reference", "badref", "--report-dir", "o2", cwd=fixtures)
    (error,) = one_line_no_traceback(out)
    assert (
        error
        == "decon: badref/atlas.jsonl.gz: truncated .gz (ends before its end-of-stream marker)"
    )


COMMANDS = [
    ("detect", "inputs", "--reference", "ref", "--report-dir", "o3", "--config"),
    ("run", "--dry-run", "--config"),
    ("render-user-data", "--config"),
    ("launch", "--count", "1", "--dry-run", "--config"),
    ("status", "--no-ec2", "--config"),
    ("review", "--config"),
]


@pytest.mark.parametrize("config", ["latin1", "gzipped", "binary", "bad-yaml", "a-list"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_names_a_corrupt_config(fixtures: Path, command, config) -> None:
    path = f"configs/{config}.yaml"
    (error,) = one_line_no_traceback(decon(*command, path, cwd=fixtures))
    assert error.startswith(f"decon: {path}:")


def test_latin1_config_names_its_line(fixtures: Path) -> None:
    out = decon("run", "--config", "configs/latin1.yaml", cwd=fixtures)
    assert out.stderr.strip() == ("decon: configs/latin1.yaml: line 1: not UTF-8 text (byte 0xe9)")


def test_review_counts_corrupt_report_lines_without_a_traceback(fixtures: Path) -> None:
    out = decon("review", "reports", cwd=fixtures)
    assert "Traceback" not in out.stderr and out.returncode == 0
    assert "malformed report lines:" in out.stdout
