"""decon review on a prepared report directory and the same reports under an S3 prefix."""

from __future__ import annotations

import json

import pytest

from decon.cli import main
from decon.fleet.review import ANSI_ON, PLAIN_OFF, PLAIN_ON, highlight, read_reports
from decon.storage import open_storage

BUCKET = "decon-out"


def line(file, n, eval_key, item, score, question, text, **extra):
    data = {
        "training_file": file,
        "input_path": file,
        "training_line": n,
        "eval_key": eval_key,
        "eval_line": item + 100,
        "eval_instance_index": item,
        "contamination_score": score,
        "training_overlap_text": text,
        "eval_question_text": question,
        "contamination_start_idx": 3,
        "contamination_end_idx": 9,
        "method": "simple",
        **extra,
    }
    return json.dumps(data)


Q1 = "what do you call the separation of ions"
Q2 = "def add(a, b): return the sum"


def reports() -> dict[str, str]:
    a = [
        line(
            "shard-a.jsonl.gz", 4, "sciq", 7, 0.95, Q1, f"... chemistry 【 {Q1} 】 dissociation ..."
        ),
        line("shard-a.jsonl.gz", 4, "humaneval", 1, 0.81, Q2, f"code: {Q2} ok"),  # same doc
        line("shard-a.jsonl.gz", 9, "sciq", 7, 0.88, Q1, f"【{Q1}】"),
        "{broken json",
        "",
    ]
    b = [
        line("sub/shard-b.jsonl", 0, "sciq", 2, 0.99, "another question", "no markers here"),
        json.dumps(["not", "an", "object"]),
    ]
    return {
        "shard-a.report.jsonl": "\n".join(a) + "\n",
        "sub/shard-b.report.jsonl": "\n".join(b) + "\n",
        "shard-c.clean": "",
        "sub/shard-d.clean": "",
    }


@pytest.fixture
def report_dir(tmp_path):
    root = tmp_path / "reports"
    for key, text in reports().items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
    return root


def check(review):
    assert (review.reports, review.clean_files, len(review.matches)) == (2, 2, 4)
    assert review.malformed == 2
    assert review.malformed_first.startswith("shard-a.report.jsonl:4:")
    assert review.documents() == 3
    assert review.per_eval() == [("sciq", 3, 3), ("humaneval", 1, 1)]
    assert review.per_input() == [("shard-a.jsonl.gz", 2, 3), ("sub/shard-b.jsonl", 1, 1)]
    assert review.top_items(2) == [("sciq", "7", 2, Q1), ("humaneval", "1", 1, Q2)]
    assert [m.score for m in review.best(3)] == [0.99, 0.95, 0.81]


def test_review_local_directory(report_dir):
    check(read_reports(open_storage(str(report_dir), None)))


def test_review_s3_prefix(s3):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    for key, text in reports().items():
        client.put_object(Bucket=BUCKET, Key=f"out/job/reports/{key}", Body=text.encode())
    client.put_object(Bucket=BUCKET, Key="out/job/reportsX/shard-z.report.jsonl", Body=b"{}")
    from decon.config import AwsSection

    check(read_reports(open_storage(f"s3://{BUCKET}/out/job/reports", AwsSection())))


def test_highlight_modes():
    text = f"before 【 {Q1} 】 after"
    assert highlight(text, Q1, color=False) == f"before {PLAIN_ON}{Q1}{PLAIN_OFF} after"
    assert highlight(text, Q1, color=True).startswith(f"before {ANSI_ON}{Q1}")
    # no Decon markers: the eval question located in the text, case-insensitively
    assert highlight("x WHAT DO YOU call the separation of ions y", Q1, False) == (
        f"x {PLAIN_ON}WHAT DO YOU call the separation of ions{PLAIN_OFF} y"
    )
    assert highlight("unrelated", Q1, False) == "unrelated"


def test_cli_text_and_json(report_dir, capsys):
    assert main(["review", str(report_dir), "--show", "2", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "2 contaminated input file(s), 2 clean, 3 contaminated document(s), 4 match(es)" in out
    assert "malformed report lines: 2" in out
    assert f"{PLAIN_ON}{Q1}{PLAIN_OFF}" in out and "\033[" not in out  # not a TTY: plain markers
    assert "match: sub/shard-b.jsonl line 0 ~ sciq[2] score 0.990 simple" in out
    assert main(["review", str(report_dir), "--json", "--color", "always"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["per_eval"][0] == {"eval": "sciq", "documents": 3, "matches": 3}
    assert data["malformed_lines"] == 2 and data["examples"][0]["score"] == 0.99
    assert main(["review", str(report_dir), "--color", "always", "--show", "3"]) == 0
    assert ANSI_ON in capsys.readouterr().out


def test_cli_missing_directory_is_one_line(tmp_path, capsys):
    assert main(["review", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope: not a directory" in err and len(err.strip().splitlines()) == 1


def test_review_shows_the_match_in_the_documents_own_words(tmp_path, capsys):
    import random

    from fakes.words import sentence

    rng = random.Random(3)
    questions = [sentence(rng, 30) for _ in range(4)]
    question = questions[0]
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "synth.jsonl").write_text(
        "".join(
            json.dumps({"eval_key": "synth", "eval_instance_index": i, "question": q}) + "\n"
            for i, q in enumerate(questions)
        )
    )
    words = question.split()
    # the document's own form: capitals and punctuation the normalised form drops
    own = " ".join(w.upper() + "," if i % 7 == 0 else w for i, w in enumerate(words))
    before = " ".join(f"lead{i}" for i in range(40))
    text = f"{before} {own}. tail1 Tail2!"
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "doc.jsonl").write_text(
        json.dumps({"text": "nothing here"}) + "\n" + json.dumps({"body": text}) + "\n"
    )
    out = tmp_path / "reports"
    argv = ["detect", str(inputs), "--reference", str(ref), "--report-dir", str(out)]
    assert main([*argv, "--content-key", "body", "--max-keyless-fraction", "1"]) == 0
    capsys.readouterr()
    assert main(["review", str(out), "--inputs", str(inputs), "--content-key", "body"]) == 0
    shown = capsys.readouterr().out.splitlines()
    (document,) = [x for x in shown if x.startswith("  document:")]
    (normalised,) = [x for x in shown if x.startswith("  normalised:")]
    assert f"{PLAIN_ON}{own}.{PLAIN_OFF}" in document  # the span, exactly as written
    assert document.split(PLAIN_ON)[0].strip().endswith("lead39")
    assert document.split("document:")[1].strip().startswith("... lead10 ")  # 30 words before
    assert document.endswith(f"{PLAIN_OFF} tail1 Tail2!")
    assert own not in normalised and words[1] in normalised
    assert shown.index(document) < shown.index(normalised)


def test_review_of_a_directory_without_reports_fails(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f": {tmp_path}: no reports (*.report.jsonl) and no .clean markers")


def test_own_words_searches_when_the_offsets_are_not_word_offsets():
    from decon.fleet.review import Match, own_words

    text = "Intro: the Separation of IONS, in water. More text."
    m = Match("r", "f", 0, "e", "1", 1.0, "x 【separation of ions】 y", "q", "simple", 40, 44)
    assert own_words(text, m, "[", "]") == "Intro: the [Separation of IONS,] in water. More text."
    m.overlap_text = "【nothing like it】"
    assert own_words(text, m, "[", "]") is None
