"""toxic mode: .vec loading, poison vectors for unknown words and numbers, synonym and reorder
robustness, and recall/precision on the generated corpus next to minhash (vectors generated
from the corpus itself; nothing is downloaded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from decon.cli import main as decon_main
from decon.detect.detector import load_detector
from decon.detect.evaltext import EvalQuestion
from decon.detect.options import DetectOptions
from decon.detect.report import report_line
from decon.detect.toxic import (
    STOPWORDS,
    ToxicDetector,
    auto_hyperplanes,
    load_projections,
    write_vec,
)
from decon.errors import UserError
from decon_synth.evaluate import evaluate_dirs
from decon_synth.plant import CorpusSpec, make_corpus
from decon_synth.text import build_filler_pool, natural_paragraphs
from decon_synth.wordvec import corpus_vectors, synonym_groups, write_corpus_vectors

QUESTION = (
    "A small child wants to buy a big car at the shop near the old town road "
    "because the teacher said it was important"
)
# Synonym swaps (from decon_synth.edits' table) and two clauses swapped.
PARAPHRASE = (
    "because the teacher said it was significant, a small kid wants to purchase a big "
    "automobile at the store near the old village road"
)
OTHER = "Which gas do green plants take in from the air to make their food during the daytime"


def detect(detector, text: str) -> tuple[list[dict], bool]:
    """The report fields of the matches in one document, and whether it was scanned."""
    (found,) = detector.detect_batch([text])
    return [report_line(m, "doc.jsonl", 0) for m in found.matches], found.scanned


def filler(chars: int, seed: int) -> str:
    return "\n\n".join(natural_paragraphs(build_filler_pool(), random.Random(seed), chars))


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    """A reference of two questions and a .vec file for their words plus some filler."""
    root = tmp_path_factory.mktemp("toxic")
    ref = root / "ref"
    ref.mkdir()
    records = [
        {"eval_key": "quiz", "eval_instance_index": i, "question": q}
        for i, q in enumerate([QUESTION, OTHER, "What is 17 times 23 apples in total cost"])
    ]
    (ref / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = " ".join([QUESTION, PARAPHRASE, OTHER, filler(20_000, 0)]).lower()
    words = {w.strip(".,;:?!()'\"") for w in text.split()} - {""}
    vec = root / "words.vec"
    with open(vec, "w") as fh:
        write_vec(fh, corpus_vectors(words, dim=48, seed=1))
    return ref, vec


def options(vec: Path, **kw) -> DetectOptions:
    return DetectOptions(mode="toxic", toxic_vectors=str(vec), eval_min_token_length=0, **kw)


def test_paraphrase_is_found_and_minhash_misses_it(small_world):
    ref, vec = small_world
    toxic = load_detector(ref, options(vec))
    assert isinstance(toxic, ToxicDetector) and toxic.stats.indexed == 3
    doc = filler(3000, 1) + "\n\n" + PARAPHRASE + "\n\n" + filler(3000, 2)
    (m,), scanned = detect(toxic, doc)
    assert scanned and m["method"] == "toxic" and m["eval_instance_index"] == 0
    assert m["overlap_ratio"] == m["contamination_score"] >= 0.5
    assert m["contamination_start_idx"] <= m["contamination_end_idx"]
    assert "automobile" in m["training_overlap_text"]
    minhash = load_detector(ref, DetectOptions(mode="minhash", eval_min_token_length=0))
    assert detect(minhash, doc)[0] == []
    # Without the paraphrase: nothing.
    assert detect(toxic, filler(3000, 1) + "\n\n" + filler(3000, 2))[0] == []


def test_changed_numbers_break_similarity(small_world):
    ref, vec = small_world
    toxic = load_detector(ref, options(vec))
    same = detect(toxic, "Quiz. What is 17 times 23 apples in total cost? Think first.")[0]
    assert [m["eval_instance_index"] for m in same] == [2]
    changed = detect(toxic, "Quiz. What is 18 times 29 apples in total cost? Think first.")[0]
    assert changed == []


def test_poison_vectors_are_deterministic_and_scaled(small_world):
    ref, vec = small_world
    a = load_detector(ref, options(vec))
    b = load_detector(ref, options(vec))
    assert np.array_equal(a.poison("zorblax"), b.poison("zorblax"))
    assert not np.array_equal(a.poison("zorblax"), a.poison("zorblay"))
    big = load_detector(ref, options(vec, toxic_poison_scale=4.0))
    assert np.allclose(big.poison("zorblax"), 4.0 * a.poison("zorblax"), rtol=1e-5)


def test_vec_file_parsing(tmp_path: Path):
    good = tmp_path / "good.vec"
    good.write_text("3 2\nThe 1 0\nCat 0.5 0.5\ncat 9 9\n")
    proj = load_projections(
        good, np.eye(2, dtype=np.float32), DetectOptions(toxic_tables=1, toxic_hyperplanes=2)
    )
    # Stopwords are dropped, the first casing wins, the header is skipped.
    assert proj.vocab == {"cat": 0} and np.allclose(proj.rows, [[0.5, 0.5]]) and proj.dim == 2
    headerless = tmp_path / "headerless.vec"
    headerless.write_text("dog 1 2\nbird 3 4\n")
    opts = DetectOptions(toxic_tables=1, toxic_hyperplanes=2, toxic_max_words=1)
    assert list(load_projections(headerless, None, opts).vocab) == ["dog"]
    ragged = tmp_path / "ragged.vec"
    ragged.write_text("2 3\ndog 1 2 3\nbird 3 4\n")
    with pytest.raises(UserError, match=r"ragged.vec:3: 2 values, expected 3"):
        load_projections(ragged, None, DetectOptions())
    junk = tmp_path / "junk.vec"
    junk.write_text("dog one two\n")
    with pytest.raises(UserError, match="not a fastText .vec file"):
        load_projections(junk, None, DetectOptions())
    assert "the" in STOPWORDS


def test_missing_vectors_is_one_clear_error(tmp_path: Path, capsys):
    assert any(p.startswith("toxic_vectors:") for p in DetectOptions(mode="toxic").validate())
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "q.jsonl").write_text(json.dumps({"question": QUESTION}) + "\n")
    code = decon_main(
        ["detect", str(ref), "--reference", str(ref), "--report-dir", str(tmp_path / "r"),
         "--mode", "toxic", "--toxic-vectors", str(tmp_path / "nope.vec")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "nope.vec: no such file" in err and "Traceback" not in err


def test_synonym_groups_share_nearby_vectors():
    groups = synonym_groups({"big": "large", "large": "huge", "car": "automobile", "a b": "c"})
    assert sorted(map(sorted, groups)) == [["automobile", "car"], ["big", "huge", "large"]]
    vecs = corpus_vectors(["big", "large", "tree", "7up"], dim=64, seed=0)
    assert "7up" not in vecs
    assert float(vecs["big"] @ vecs["large"]) > 0.6 > abs(float(vecs["big"] @ vecs["tree"]))


# -- generated corpus: toxic next to minhash and simple ---------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    manifest = make_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec(seed=7))
    vec = manifest.root / "words.vec"
    assert write_corpus_vectors(manifest.root, vec) > 1000
    return manifest, vec


def score_mode(corpus, out: Path, *flags: str):
    manifest, _ = corpus
    args = ["detect", str(manifest.train_dir), "--reference", str(manifest.reference_dir)]
    assert decon_main([*args, "--report-dir", str(out), "--workers", "1", *flags]) == 0
    out.mkdir(exist_ok=True)
    return evaluate_dirs(manifest.truth_path, out)


NEGATIVES = ("hard_negative_topic", "hard_negative_template", "held_out_item", "clean_natural")


@pytest.mark.parametrize("compat", ["decon", "none"])
def test_toxic_finds_paraphrases_minhash_misses_and_stays_precise(corpus, tmp_path, compat):
    _, vec = corpus
    flags = ("--compat", compat)
    minhash = score_mode(corpus, tmp_path / "minhash", "--mode", "minhash", *flags)
    toxic = score_mode(corpus, tmp_path / "toxic", "--mode", "toxic", "--toxic-vectors", str(vec),
                       *flags)  # fmt: skip
    # compat decon keeps Decon's eval_min_token_length (20): short items are not indexed.
    margin, floor = (0.15, 0.6) if compat == "decon" else (0.15, 0.75)
    assert toxic.recall("heavy_edit") >= minhash.recall("heavy_edit") + margin
    assert toxic.recall("heavy_edit") >= floor
    for kind in ("verbatim_question", "question_answer", "embedded_long", "light_edit"):
        assert toxic.recall(kind) >= minhash.recall(kind) - 0.15, kind
    # Toxic compares questions only: a held-out item made from the same template as a reference
    # item ("Write a function to find the ..." in MBPP) can come close enough (2 of 30 here).
    assert toxic.precision() >= 0.97
    assert toxic.false_positives("held_out_item") <= 2
    for kind in NEGATIVES:  # incl. same template with other words and changed numbers
        if kind != "held_out_item":
            assert toxic.false_positives(kind) == 0, kind
    # At most one document in a hundred named a template sibling instead of its own item.
    assert toxic.item_recall() >= toxic.recall() - 0.01


def test_auto_hyperplanes_grow_with_the_reference():
    def questions(n: int) -> list[EvalQuestion]:
        words = tuple(f"word{j}" for j in range(12))  # 12 content words: 11 bigrams
        return [EvalQuestion(i, "k", i, i, None, None, "f.jsonl", words) for i in range(n)]

    opts = DetectOptions()
    assert auto_hyperplanes(questions(10), opts) == 12  # floor
    assert auto_hyperplanes(questions(100_000), opts) == 22  # 1.1M n-grams: 2^21 > 1.1M
    assert auto_hyperplanes(questions(10_000_000), opts) == 24  # cap
