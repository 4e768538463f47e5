"""The item table: every indexed item comes back from its flat columns exactly as built."""

from __future__ import annotations

import gzip
import json
from itertools import islice

import pytest

from conftest import BUNDLED_EVALS
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats, kept_records
from decon.detect.reference import _Builder
from decon.detect.tokenize import get_tokenizer

BUNDLED = BUNDLED_EVALS


def sample_records() -> list[tuple[str, int, dict]]:
    out = []
    for path in sorted(BUNDLED.glob("*.jsonl.gz"))[::4]:
        with gzip.open(path) as fh:
            out += [(path.name, i, json.loads(x)) for i, x in enumerate(islice(fh, 300))]
    out.append(("x.jsonl", 0, {"question": "What is it? " * 700, "answer": "a b c d e " * 300}))
    out.append(
        ("x.jsonl", 1, {"question": "Read this and say why", "passage": "p q r s t u v " * 9})
    )
    out.append(
        ("x.jsonl", 2, {"question": "Café naïve \ud800 question here now", "fingerprint": 7})
    )
    return out


@pytest.mark.skipif(not BUNDLED.is_dir(), reason="shared bundled evals not present")
@pytest.mark.parametrize("compat", ["none", "decon"])
def test_item_table_gives_back_every_item_as_built(compat: str) -> None:
    options = DetectOptions(compat=compat, tokenizer="cl100k")
    stats = ReferenceStats()
    builder = _Builder(options, get_tokenizer(options.tokenizer), stats)
    for kept in kept_records(sample_records(), options, builder.tok, stats):
        builder.add(kept)
    built = list(builder.items)
    passages = dict(builder.passage_sets)
    answers = list(builder.answers)
    index = builder.finish()
    assert len(index.items) == len(built) >= 1000
    an = options.answer_ngram_size
    for i, it in enumerate(built):
        # The builder keeps tokens and n-gram id sets apart; the table gives them back.
        it.answer_tokens = None if answers[i] is None else answers[i].tolist()
        it.answer_token_set = frozenset(it.answer_tokens or ())
        if i in passages:
            it.passage_token_set = frozenset(passages[i].tolist())
        answer = it.answer_tokens or []
        if len(answer) > options.short_answer_token_threshold and len(answer) >= an:
            it.answer_ngram_ids = frozenset(index.answer_ngrams.ids(answer))
        if it.passage_token_length >= options.passage_ngram_size:
            it.passage_ngram_ids = index.items[i].passage_ngram_ids
            assert it.passage_ngram_ids
    assert [index.items[i] for i in range(len(built))] == built
    assert list(index.items) == built
    assert index.items[len(built) - 1].passage_words == built[-1].passage_words
