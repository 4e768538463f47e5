"""minhash mode: datasketch-compatible window signatures, windows sized to the questions,
exact Jaccard/containment check, and recall/precision on the generated corpus next to simple."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from decon.cli import main as decon_main
from decon.detect.detector import load_detector
from decon.detect.minhash import (
    MinHashDetector,
    length_ladder,
    permuted_hashes,
    shingle_hashes,
    size_classes,
)
from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.report import report_line
from decon_synth.evaluate import evaluate_dirs
from decon_synth.plant import CorpusSpec, make_corpus
from decon_synth.text import build_filler_pool, natural_paragraphs

QUESTION = (
    "Which planet in our solar system has the longest day measured in Earth hours, "
    "and what causes its unusually slow rotation?"
)


def detect(detector, text: str) -> tuple[list[dict], bool]:
    """The report fields of the matches in one document, and whether it was scanned."""
    (found,) = detector.detect_batch([text])
    return [report_line(m, "doc.jsonl", 0) for m in found.matches], found.scanned


def write_reference(path: Path, questions: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"eval_key": "quiz", "eval_instance_index": i, "question": q})
        for i, q in enumerate(questions)
    ]
    (path / "quiz.jsonl").write_text("\n".join(lines) + "\n")
    return path


def filler(chars: int, seed: int = 0) -> str:
    return "\n\n".join(natural_paragraphs(build_filler_pool(), random.Random(seed), chars))


def test_window_signature_equals_datasketch_bulk():
    ids = np.arange(1, 40, dtype=np.int64)
    hashes = shingle_hashes(ids, 2)
    assert len(hashes) == 38 and len(set(hashes.tolist())) == 38
    (expected,) = MinHash.bulk([hashes.tolist()], num_perm=64, seed=3, hashfunc=int)
    a, b = (np.asarray(x, dtype=np.uint32) for x in MinHash(num_perm=64, seed=3).permutations)
    ours = permuted_hashes(hashes, a, b).min(axis=0)
    assert np.array_equal(ours, expected.hashvalues)


def test_size_classes_hold_every_question_inside_one_window():
    lengths = [1, 2, 3, 5, 9, 10, 17, 40, 41, 300]
    classes = size_classes([np.arange(n, dtype=np.uint32) for n in lengths])
    ladder = length_ladder(300)
    assert ladder[:4] == [1, 2, 3, 4] and ladder == sorted(set(ladder))
    for n in lengths:
        (c,) = [c for c in classes if c.min_len <= n <= c.max_len]
        # Windows start every `stride` shingles and are `stride` longer than the class.
        assert c.window >= n + c.stride


def test_question_inside_50kb_document_is_found_with_its_span(tmp_path: Path):
    ref = write_reference(tmp_path / "ref", [QUESTION, "How many legs does a spider have?"])
    options = DetectOptions(mode="minhash", eval_min_token_length=0)
    detector = load_detector(ref, options)
    assert isinstance(detector, MinHashDetector) and detector.stats.indexed == 2
    body = filler(25_000, 1) + "\n\nQ: " + QUESTION + "\n\n" + filler(25_000, 2)
    assert len(body) > 50_000
    (match,), scanned = detect(detector, body)
    assert scanned
    assert match["method"] == "minhash" and match["eval_instance_index"] == 0
    assert match["jaccard_similarity"] == match["contamination_score"] == 1.0
    assert match["training_overlap_text"] == " ".join(match["eval_question_text"].split())
    words = normalized_words(body)
    assert match["contamination_end_idx"] - match["contamination_start_idx"] + 1 == len(
        match["eval_question_text"].split()
    )
    assert words[match["contamination_start_idx"]] == "which"
    # The same document without the question: nothing, and (prefilter) not even scanned.
    assert detect(detector, filler(25_000, 1)) == ([], False)


def test_light_edit_jaccard_and_containment(tmp_path: Path):
    ref = write_reference(tmp_path / "ref", [QUESTION])
    edited = QUESTION.replace("longest", "really long").replace("slow", "sluggish")
    text = filler(3000, 4) + " " + edited + " " + filler(3000, 5)
    jac = load_detector(ref, DetectOptions(mode="minhash", eval_min_token_length=0))
    (m,), _ = detect(jac, text)
    assert 0.5 <= m["jaccard_similarity"] < 1.0
    con = load_detector(
        ref, DetectOptions(mode="minhash", eval_min_token_length=0, minhash_metric="containment")
    )
    (c,), _ = detect(con, text)
    assert "jaccard_similarity" not in c and c["containment"] >= m["jaccard_similarity"]
    strict = load_detector(
        ref, DetectOptions(mode="minhash", eval_min_token_length=0, minhash_threshold=0.95)
    )
    assert detect(strict, text)[0] == []


def test_bpe_token_shingles(tmp_path: Path):
    ref = write_reference(tmp_path / "ref", [QUESTION])
    det = load_detector(ref, DetectOptions(mode="minhash", tokenizer="cl100k"))
    (m,), _ = detect(det, filler(2000, 6) + " " + QUESTION + " " + filler(2000, 7))
    assert m["jaccard_similarity"] == 1.0
    assert "longest day measured in earth hours" in m["training_overlap_text"]


def test_options_are_validated_and_documented():
    bad = DetectOptions(mode="minhash", minhash_metric="cosine", minhash_threshold=0.0)
    problems = bad.validate()
    assert any(p.startswith("minhash_metric:") for p in problems)
    assert any(p.startswith("minhash_threshold:") for p in problems)
    assert DetectOptions(mode="minhash").validate() == []


# -- generated corpus: minhash next to simple -------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec(seed=7, docs_per_kind=20))


def score_mode(corpus, out: Path, *flags: str):
    code = decon_main(
        [
            "detect",
            str(corpus.train_dir),
            "--reference",
            str(corpus.reference_dir),
            "--report-dir",
            str(out),
            "--workers",
            "1",
            *flags,
        ]
    )
    assert code == 0
    out.mkdir(exist_ok=True)
    return evaluate_dirs(corpus.truth_path, out)


NEGATIVES = ("hard_negative_topic", "hard_negative_template", "held_out_item", "clean_natural")


@pytest.mark.parametrize("compat", ["decon", "none"])
def test_minhash_finds_light_edits_simple_misses_and_stays_precise(corpus, tmp_path, compat):
    # The baseline is exact n-gram matching: Decon's simple mode. compat decon also keeps
    # Decon's eval_min_token_length (20), which leaves short items out of every mode's index.
    simple = score_mode(corpus, tmp_path / "simple", "--compat", "decon")
    minhash = score_mode(corpus, tmp_path / "minhash", "--mode", "minhash", "--compat", compat)
    assert minhash.recall("light_edit") >= simple.recall("light_edit") + 0.3
    assert minhash.recall("light_edit") >= (0.6 if compat == "decon" else 0.85)
    for kind in ("verbatim_question", "question_answer", "embedded_long"):
        assert minhash.recall(kind) >= simple.recall(kind), kind
    assert minhash.precision() == 1.0
    for kind in NEGATIVES:  # incl. same template with other words and changed numbers
        assert minhash.false_positives(kind) == 0, kind
    assert minhash.item_recall() == minhash.recall()  # every flagged document names its item
