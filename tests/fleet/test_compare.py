"""decon compare on two hand-made report directories, and the same reports under S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decon.cli import main
from decon.config import AwsSection
from decon.fleet.compare import Comparison, keyed
from decon.fleet.review import PLAIN_OFF, PLAIN_ON, read_reports
from decon.storage import open_storage

BUCKET = "decon-compare"
Q_SCIQ = "what do you call the separation of ions in a solution"
Q_GSM = "natalia sold clips to 48 of her friends in april"
Q_MMLU = "which organ produces insulin in the human body"


def line(file: str, n: int, eval_key: str, item: int, score: float, question: str, **extra):
    return json.dumps(
        {
            "training_file": file,
            "input_path": file,
            "training_line": n,
            "eval_key": eval_key,
            "eval_instance_index": item,
            "contamination_score": score,
            "training_overlap_text": f"【{question}】",
            "eval_question_text": question,
            "method": "simple",
            **extra,
        }
    )


# A run and a later run with other options: A finds the sciq item twice and an mmlu item
# (two records of one multiple-choice item: one match); B finds one sciq, the gsm8k item
# and a weak mmlu match on another line.
REPORTS_A = {
    "shard-1.report.jsonl": [
        line("shard-1.jsonl", 2, "sciq", 7, 0.95, Q_SCIQ),
        line("shard-1.jsonl", 5, "sciq", 7, 0.91, Q_SCIQ),
        line("shard-1.jsonl", 8, "mmlu", 3, 0.88, Q_MMLU, eval_line=12),
        line("shard-1.jsonl", 8, "mmlu", 3, 0.93, Q_MMLU, eval_line=13),
    ],
    "shard-2.clean": [],
}
REPORTS_B = {
    "shard-1.report.jsonl": [
        line("shard-1.jsonl", 2, "sciq", 7, 0.97, Q_SCIQ),
        line("shard-1.jsonl", 9, "mmlu", 3, 0.41, Q_MMLU),
    ],
    "shard-2.report.jsonl": [line("shard-2.jsonl", 0, "gsm8k", 0, 0.99, Q_GSM)],
}


def write_reports(root: Path, reports: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True)
    for name, lines in reports.items():
        (root / name).write_text("".join(x + "\n" for x in lines))
    return root


def training_files(root: Path) -> Path:
    root.mkdir()
    docs1 = [f"Filler line {i} about nothing in particular." for i in range(10)]
    docs1[2] = (
        "Chemistry notes: What do you call the Separation of ions in a solution? Dissociation."
    )
    docs1[5] = "Q: what do you call the separation of ions in a solution -- asked again."
    docs1[8] = "Biology quiz. Which organ produces insulin in the human body? The pancreas."
    docs1[9] = "Which organ produces insulin in the human body, roughly?"
    (root / "shard-1.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs1))
    docs2 = ["Natalia sold clips to 48 of her friends in April, and then half as many in May."]
    (root / "shard-2.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs2))
    return root


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (
        write_reports(tmp_path / "a", REPORTS_A),
        write_reports(tmp_path / "b", REPORTS_B),
        training_files(tmp_path / "inputs"),
    )


def test_counts_per_eval_keyed_by_file_line_eval_and_instance(dirs):
    a, b, _ = dirs
    c = Comparison(
        keyed(read_reports(open_storage(str(a), AwsSection())), None, None),
        keyed(read_reports(open_storage(str(b), AwsSection())), None, None),
    )
    assert c.both == [("shard-1.jsonl", 2, "sciq", "7")]
    assert c.only_a == [("shard-1.jsonl", 5, "sciq", "7"), ("shard-1.jsonl", 8, "mmlu", "3")]
    assert c.only_b == [("shard-1.jsonl", 9, "mmlu", "3"), ("shard-2.jsonl", 0, "gsm8k", "0")]
    assert c.per_eval() == [("gsm8k", 0, 0, 1), ("mmlu", 0, 1, 1), ("sciq", 1, 1, 0)]
    assert c.a[("shard-1.jsonl", 8, "mmlu", "3")].score == 0.93  # the item's best line


def test_cli_text_shows_examples_in_the_documents_own_words(dirs, capsys):
    a, b, inputs = dirs
    assert main(["compare", str(a), str(b), "--inputs", str(inputs)]) == 0
    out = capsys.readouterr().out
    assert "1 in both, 2 only in A, 2 only in B" in out
    assert "examples only in A:" in out and "examples only in B:" in out
    # one example per eval item, best first: mmlu (0.93) for A; gsm8k (0.99), mmlu for B
    assert "match: shard-1.jsonl line 8 ~ mmlu[3] score 0.930" in out
    assert "match: shard-2.jsonl line 0 ~ gsm8k[0] score 0.990" in out
    assert f"Biology quiz. {PLAIN_ON}Which organ produces insulin in the human body?" in out
    assert f"{PLAIN_ON}Natalia sold clips to 48 of her friends in April,{PLAIN_OFF}" in out
    assert "shard-1.jsonl line 2" not in out  # in both: counted, not an example


def test_cli_only_in_eval_min_score_and_json(dirs, capsys):
    a, b, _ = dirs
    assert main(["compare", str(a), str(b), "--only-in", "b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"] == {"both": 1, "only_a": 2, "only_b": 2}
    assert "only_a" not in data
    assert [(r["training_file"], r["training_line"], r["eval"]) for r in data["only_b"]] == [
        ("shard-1.jsonl", 9, "mmlu"),
        ("shard-2.jsonl", 0, "gsm8k"),
    ]
    assert main(["compare", str(a), str(b), "--min-score", "0.5", "--eval", "mmlu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["per_eval"] == [{"eval": "mmlu", "both": 0, "only_a": 1, "only_b": 0}]
    assert main(["compare", str(a), str(b), "--only-in", "a", "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "only in A:" in out and "shard-1.jsonl  5     sciq[7]" in out
    assert "examples only in" not in out and "only in B:" not in out


def test_cli_bad_input_is_one_line(dirs, tmp_path, capsys):
    a, _, _ = dirs
    assert main(["compare", str(a), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope: not a directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(a), str(tmp_path / "empty")]) == 2
    assert "no reports" in capsys.readouterr().err


def test_compare_s3_prefixes(s3, capsys):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    for prefix, reports in (("run-a", REPORTS_A), ("run-b", REPORTS_B)):
        for name, lines in reports.items():
            body = "".join(x + "\n" for x in lines).encode()
            client.put_object(Bucket=BUCKET, Key=f"out/{prefix}/reports/{name}", Body=body)
    a, b = f"s3://{BUCKET}/out/run-a/reports/", f"s3://{BUCKET}/out/run-b/reports/"
    assert main(["compare", a, b, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"] == {"both": 1, "only_a": 2, "only_b": 2}
    assert data["a"] == a
