"""The ground-truth corpus generator: kinds, truth lines, negatives, compression, determinism."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from decon.detect.io import iter_lines
from decon.errors import UserError
from decon_synth import plant
from decon_synth.__main__ import main as synth_main
from decon_synth.benchmarks import normalize_words, read_reference_dir

SPEC = plant.CorpusSpec(
    seed=11,
    items_per_benchmark=6,
    held_out_per_benchmark=2,
    docs_per_kind=12,
    kind_counts={"embedded_long": 5},
    files=5,
    compression="mixed",
    content_key="meta.text",
    malformed_lines=4,
    long_doc_chars=45_000,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> plant.CorpusManifest:
    return plant.make_corpus(tmp_path_factory.mktemp("corpus"), SPEC)


def _lines(path: Path) -> list[bytes]:
    return [line.removesuffix(b"\n") for line in iter_lines(path, keep_bom=True)]


def _text(raw: bytes) -> str:
    return json.loads(raw)["meta"]["text"]


def _docs(corpus) -> list[tuple[plant.TruthRecord, str]]:
    files = {name: _lines(corpus.train_dir / name) for name in corpus.files}
    out = []
    for t in plant.read_truth(corpus.truth_path):
        if t.kind != plant.MALFORMED_KIND:
            out.append((t, _text(files[t.file][t.line])))
    return out


def _reference(corpus) -> dict[tuple[str, int], dict]:
    return {
        (r["eval_key"], r["eval_instance_index"]): r
        for r in read_reference_dir(corpus.reference_dir)
    }


def test_every_kind_present_with_requested_counts(corpus):
    truth = plant.read_truth(corpus.truth_path)
    counts = Counter(t.kind for t in truth)
    for kind in plant.ALL_KINDS:
        assert counts[kind] == SPEC.count(kind), kind
    assert counts[plant.MALFORMED_KIND] == 4
    wanted = {k: SPEC.count(k) for k in plant.ALL_KINDS}
    assert corpus.docs_per_kind == {k: n for k, n in wanted.items() if n}
    assert all(wanted[k] == 0 for k in plant.RULE_NEGATIVE_KINDS)  # opt-in
    assert all(t.positive == (t.kind in plant.POSITIVE_KINDS) for t in truth)


def test_truth_lines_point_at_the_documents(corpus):
    files = {name: _lines(corpus.train_dir / name) for name in corpus.files}
    truth = plant.read_truth(corpus.truth_path)
    assert sum(len(v) for v in files.values()) == len(truth)  # every line has a truth record
    for t in truth:
        raw = files[t.file][t.line]
        if t.kind == plant.MALFORMED_KIND:
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            assert "meta" not in rec
        else:
            assert json.loads(raw)["id"] == t.id


def test_files_cover_every_compression_and_repeat_names_across_folders(corpus):
    suffixes = {Path(name).suffix for name in corpus.files}
    assert suffixes == {".jsonl", ".gz", ".zst", ".bz2", ".xz"}
    assert "part-a/shard-000.jsonl" in corpus.files and "part-b/shard-000.jsonl.gz" in corpus.files
    magic = {".gz": b"\x1f\x8b", ".zst": b"\x28\xb5\x2f\xfd", ".bz2": b"BZh", ".xz": b"\xfd7zXZ"}
    for name in corpus.files:
        head = (corpus.train_dir / name).read_bytes()[:6]
        assert head.startswith(magic.get(Path(name).suffix, b"{")), (name, head)


def test_verbatim_kinds_contain_the_item_text(corpus):
    ref = _reference(corpus)
    for t, text in _docs(corpus):
        if t.kind in ("verbatim_question", "question_answer", "embedded_long"):
            item = ref[(t.eval_key, t.eval_instance_index)]
            assert item["question"] in text, (t.kind, t.id)
        if t.kind == "question_answer":
            assert item.get("answer", "") in text
        if t.kind == "embedded_long":
            assert len(text) >= SPEC.long_doc_chars


def test_edited_kinds_no_longer_contain_the_question(corpus):
    ref = _reference(corpus)
    for t, text in _docs(corpus):
        if t.kind in ("light_edit", "heavy_edit"):
            q = " ".join(normalize_words(ref[(t.eval_key, t.eval_instance_index)]["question"]))
            assert f" {q} " not in f" {' '.join(normalize_words(text))} ", t.id
            assert t.edits >= 1


def test_negatives_share_no_8_word_run_with_any_reference_item(corpus):
    records = read_reference_dir(corpus.reference_dir)
    grams = set()
    short = set()
    for r in records:
        for field in ("passage", "question", "answer"):
            words = normalize_words(r.get(field) or "")
            grams |= {tuple(words[i : i + 8]) for i in range(len(words) - 7)}
        q = tuple(normalize_words(r["question"]))
        if len(q) < 8:
            short.add(" ".join(q))
    for t, text in _docs(corpus):
        if t.positive:
            continue
        words = normalize_words(text)
        assert not any(tuple(words[i : i + 8]) in grams for i in range(len(words) - 7)), t.id
        joined = f" {' '.join(words)} "
        assert not any(f" {s} " in joined for s in short), t.id


def test_held_out_items_are_not_in_the_reference(corpus):
    ref = _reference(corpus)
    fingerprints = {r["fingerprint"] for r in ref.values()}
    held = [t for t, _ in _docs(corpus) if t.kind == "held_out_item"]
    assert held
    for t in held:
        assert (t.eval_key, t.eval_instance_index) not in ref
    assert len(fingerprints) == len(ref)


def test_positive_kinds_cover_the_length_buckets(corpus):
    truth = plant.read_truth(corpus.truth_path)
    for kind in ("verbatim_question", "question_answer", "light_edit"):
        buckets = {t.bucket for t in truth if t.kind == kind}
        assert len(buckets) == 5, (kind, buckets)


def test_same_spec_same_bytes_other_seed_other_corpus(tmp_path):
    spec = plant.CorpusSpec(
        seed=3, benchmarks=("piqa", "gsm8k"), items_per_benchmark=4, held_out_per_benchmark=1,
        docs_per_kind=4, files=2, long_doc_chars=5000, malformed_lines=2,
    )  # fmt: skip
    a = plant.make_corpus(tmp_path / "a", spec)
    b = plant.make_corpus(tmp_path / "b", spec)
    c = plant.make_corpus(tmp_path / "c", replace(spec, seed=4))
    for name in a.files:
        assert (a.train_dir / name).read_bytes() == (b.train_dir / name).read_bytes()
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()
    assert a.truth_path.read_bytes() != c.truth_path.read_bytes()
    for ref in a.reference_dir.iterdir():
        assert ref.read_bytes() == (b.reference_dir / ref.name).read_bytes()


def test_plain_content_key_and_no_compression(tmp_path):
    spec = plant.CorpusSpec(
        seed=1, benchmarks=("naturalqs_open",), items_per_benchmark=5, held_out_per_benchmark=1,
        docs_per_kind=2, files=1, subdirs=("only",), compression="none", long_doc_chars=3000,
    )  # fmt: skip
    m = plant.make_corpus(tmp_path, spec)
    assert m.files == ("only/shard-000.jsonl",)
    first = json.loads((tmp_path / "train" / m.files[0]).read_text().splitlines()[0])
    assert set(first) == {"id", "text"}


@pytest.mark.parametrize(
    ("change", "message"),
    [({"compression": "lz4"}, "compression"), ({"kind_counts": {"bogus": 1}}, "unknown kinds"),
     ({"files": 0}, "files must be")],
)  # fmt: skip
def test_bad_spec_is_a_user_error(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        plant.make_corpus(tmp_path, replace(SPEC, **change))


def test_cli_make_corpus(tmp_path, capsys):
    rc = synth_main([
        "make-corpus", "--out", str(tmp_path), "--seed", "2", "--benchmarks", "sciq",
        "--items-per-benchmark", "5", "--held-out-per-benchmark", "1", "--docs-per-kind", "2",
        "--kind", "embedded_long=1", "--files", "2", "--long-doc-chars", "4000",
    ])  # fmt: skip
    assert rc == 0
    assert "wrote 17 documents" in capsys.readouterr().out
    assert (tmp_path / "reference" / "sciq.jsonl.gz").exists()
    assert json.loads((tmp_path / "spec.json").read_text())["seed"] == 2


def test_cli_rejects_bad_kind_argument(capsys):
    from decon.errors import guarded_main

    rc = guarded_main(synth_main, ["make-corpus", "--out", "/nonexistent", "--kind", "x"])
    assert rc == 2
    assert "--kind 'x'" in capsys.readouterr().err
