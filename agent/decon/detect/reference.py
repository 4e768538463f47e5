"""Reference index from Decon's eval record format (pure: records in, index out).

Records: `eval_key`, `eval_instance_index`, `split`, `question`, optional `answer`, `passage`,
`doc_id`, `fingerprint`. The index maps question n-grams (tuples of token ids) to the eval
items containing them, with IDF ln(N/df); answers and passages get their own n-gram sets.
It also holds the prefilter (`decon.detect.prefilter`) built from the seeding n-grams.

With `compat: none` the index also holds, for every item (short ones included), the normalised
words of its question and answer and word anchors for the alignment rules: the question is cut
into (allowed edits + 1) chunks, so an occurrence with at most that many word edits keeps one
chunk intact, and a run of up to ANCHOR_WORDS words of each chunk is an anchor (a seed of the
prefilter too, which therefore stays lossless).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decon.detect.chunkfilter import SeedBound
from decon.detect.identity import Identity, build_identity, template_key
from decon.detect.ngramtable import NgramTable, Postings, sorted_unique
from decon.detect.options import DetectOptions
from decon.detect.prefilter import Prefilter, build_prefilter, padded_rows, seed_bytes
from decon.detect.records import (
    EvalRecord,
    ReferenceStats,
    kept_records,
    read_records,
    record_text,
)
from decon.detect.tokenize import BpeTokenizer, Tokenizer, WordTokenizer, get_tokenizer

# English function words: never count as evidence that a text is a given eval item.
FUNCTION_WORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be
been being this that these those it its he she they them his her their we our you your i me my
not no do does did done have has had so than too very can could will would shall should may might
must which who whom whose what when where why how all any some such only own same other into over
under about above below up down out off again further once here there both each few more most nor
just s t""".split()  # noqa: SIM905 (a word list reads better as text)
)
ANCHOR_WORDS = 4  # longest anchor run; longer runs are rarer but cost more lookups
MIN_FUZZY_WORDS = 4  # shorter questions must occur exactly
LONE_ANCHOR_CHARS = 9  # a single-word anchor needs this many characters
MIN_ALIGNED_WORDS = 3  # shorter questions are never aligned


def content_word_count(words: Iterable[str]) -> int:
    """Words that are not function words (numbers count: templates change them)."""
    return sum(1 for w in words if w not in FUNCTION_WORDS)


def allowed_edits(n_words: int, options: DetectOptions) -> int:
    """Word edits tolerated when aligning a question of `n_words` words."""
    if n_words < MIN_FUZZY_WORDS:
        return 0
    return min(options.max_word_edits, max(1, round(n_words * options.word_edit_rate)))


def _prefix(values: Iterable[int]) -> list[int]:
    return list(itertools.accumulate(values, initial=0))


def question_chunks(
    words: tuple[str, ...], edits: int, content: list[int] | None = None
) -> list[tuple[int, int]]:
    """At most `edits + 1` contiguous chunks covering `words` (pigeonhole: an occurrence with
    fewer edits than chunks keeps one chunk intact), cut greedily once a chunk has its share of
    the words and a content word; a lone word must be long. No anchor is then a common word or
    a function-word run (which would make the prefilter pass most documents). `content`: the
    prefix counts of content words (computed when not given)."""
    if content is None:
        content = _prefix(w not in FUNCTION_WORDS for w in words)
    target = max(2, len(words) // (edits + 1))
    chunks: list[tuple[int, int]] = []
    start = 0
    for i in range(len(words)):
        size = i + 1 - start
        lone = size == 1 and target == 2 and len(words[i]) >= LONE_ANCHOR_CHARS
        if (size >= target or lone) and content[i + 1] > content[start]:
            chunks.append((start, i + 1))
            start = i + 1
    if not chunks:
        return [(0, len(words))]
    if len(words) - start >= 2 and content[len(words)] > content[start]:
        chunks.append((start, len(words)))
    chunks[-1] = (chunks[-1][0], len(words))
    if len(chunks) > edits + 1:
        chunks = [*chunks[:edits], (chunks[edits][0], len(words))]
    return chunks


def chunk_anchor(
    words: tuple[str, ...], start: int, end: int, letters: list[int] | None = None
) -> tuple[int, int]:
    """The run of up to ANCHOR_WORDS words inside [start, end) with the most content letters
    (the first such run). `letters`: prefix sums of content-word lengths (computed when not
    given)."""
    if letters is None:
        letters = _prefix(len(w) if w not in FUNCTION_WORDS else 0 for w in words)
    k = min(ANCHOR_WORDS, end - start)
    best, weight = start, -1
    for i in range(start, end - k + 1):
        w = letters[i + k] - letters[i]
        if w > weight:
            best, weight = i, w
    return best, best + k


def key_words(
    words: tuple[str, ...], edits: int, question_df: Mapping[str, int]
) -> tuple[str, ...]:
    """Distinct words of a question, rarest in the reference's questions first, that fill more
    than `edits` of its positions: an alignment with at most `edits` edits keeps one of them,
    so a document with none of them cannot hold the question (empty: nothing ruled out)."""
    if len(words) <= edits:
        return ()
    counts = collections.Counter(words)
    chosen: list[str] = []
    covered = 0
    for w in sorted(counts, key=lambda w: (question_df[w], -len(w), w)):
        chosen.append(w)
        covered += counts[w]
        if covered > edits:
            break
    return tuple(chosen)


def plan_anchors(
    words: tuple[str, ...], options: DetectOptions
) -> tuple[int, list[tuple[int, int]]]:
    """Allowed edits and anchor (start, end) runs for a question (no anchors: not aligned).

    Edits are capped at (anchorable chunks - 1), so no anchor is a lone function word or
    short word (which would make the prefilter pass most documents)."""
    is_content = [w not in FUNCTION_WORDS for w in words]
    content = _prefix(is_content)
    if len(words) < MIN_ALIGNED_WORDS or content[-1] < options.min_content_words:
        return 0, []
    letters = _prefix(len(w) if c else 0 for w, c in zip(words, is_content, strict=True))
    chunks = question_chunks(words, allowed_edits(len(words), options), content)
    return len(chunks) - 1, [chunk_anchor(words, s, e, letters) for s, e in chunks]


@dataclass
class WordAnchors:
    """Anchor runs per length: words -> (item id, offset of the run in the question)."""

    by_length: dict[int, dict[tuple[str, ...], list[tuple[int, int]]]] = field(default_factory=dict)

    def add(self, run: tuple[str, ...], item_id: int, offset: int) -> None:
        self.by_length.setdefault(len(run), {}).setdefault(run, []).append((item_id, offset))


@dataclass(slots=True)
class EvalItem:
    """One indexed eval record (the hot fields used in scoring plus report metadata)."""

    item_id: int
    eval_key: str
    eval_line: int
    eval_instance_index: int
    split: str | None
    fingerprint: str | None
    reference_file: str
    question_text: str
    answer_text: str | None
    passage_text: str | None
    question_token_length: int
    unique_ngrams: int
    question_idf_sum: float = 0.0
    answer_tokens: list[int] | None = None  # ordered; None when the item has no answer
    answer_token_set: frozenset[int] = frozenset()
    answer_ngram_ids: frozenset[int] = frozenset()
    answer_idf_total: float = 0.0
    passage_token_length: int = 0
    passage_token_set: frozenset[int] | None = None  # None when the item has no passage
    passage_ngram_ids: frozenset[int] = frozenset()
    passage_idf_total: float = 0.0
    ngram_indexed: bool = True  # False: only the alignment rules see it (compat none)
    question_words: tuple[str, ...] = ()
    answer_words: tuple[str, ...] = ()
    question_edits: int = 0  # word edits tolerated when aligning the question
    question_key_words: tuple[str, ...] = ()  # `key_words` of the question
    question_content_words: int = 0
    template_key: int = 0  # equal for questions made from one template (`identity`)

    @property
    def passage_words(self) -> tuple[str, ...]:
        """The normalised words of the passage (its first 1000), for the alignment rules."""
        return tuple(self.passage_text.split()) if self.passage_text else ()

    @property
    def instance(self) -> tuple[str, str | None, int]:
        """The eval item a record belongs to (a multiple-choice question is one instance
        expanded into one record per choice)."""
        return (self.eval_key, self.split, self.eval_instance_index)

    @property
    def has_answer(self) -> bool:
        return self.answer_tokens is not None

    @property
    def has_passage(self) -> bool:
        return self.passage_token_set is not None


_INT_FIELDS = (
    "eval_line",
    "eval_instance_index",
    "question_token_length",
    "unique_ngrams",
    "passage_token_length",
    "question_edits",
    "question_content_words",
    "template_key",
)
_FLOAT_FIELDS = ("question_idf_sum", "answer_idf_total", "passage_idf_total")
_NAME_FIELDS = ("eval_key", "split", "reference_file")
_CSR_FIELDS = ("answer_tokens", "passage_token_set", "answer_ngram_ids", "passage_ngram_ids")
# Flag bits of an item.
_NGRAM_INDEXED, _HAS_ANSWER, _HAS_PASSAGE, _ANSWER_TEXT, _PASSAGE_TEXT, _FINGERPRINT = (
    1,
    2,
    4,
    8,
    16,
    32,
)
_QWORDS_ARE_TEXT, _AWORDS_ARE_TEXT = 64, 128
_EMPTY = np.zeros(0, dtype=np.int32)
# per item: fingerprint, question, answer, passage text, question, answer, question key words
_TEXTS = 7


class ItemTable(Sequence[EvalItem]):
    """The indexed items in flat arrays (one row each, texts in one UTF-8 buffer, token and
    n-gram id sets as CSR); `table[i]` makes item i's `EvalItem`, kept in a bounded cache
    (a job's documents touch few items)."""

    MAX_CACHED = 1 << 15

    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = columns
        self._cache: dict[int, EvalItem] = {}

    @classmethod
    def of(
        cls,
        items: list[EvalItem],
        passage_sets: dict[int, np.ndarray] | None = None,
        answer_ngram_ids: tuple[np.ndarray, np.ndarray] | None = None,
        passage_ngram_ids: tuple[np.ndarray, np.ndarray] | None = None,
        answers: list[np.ndarray | None] | None = None,
    ) -> ItemTable:
        """The table of `items`; the builder passes their token and n-gram id sets apart
        (item id -> passage tokens, the ascending answer / passage n-gram ids of all items
        as CSR bounds and ids, and per item its answer tokens or None), so that they are never
        Python sets or lists."""
        n = len(items)
        ints = np.array([[getattr(it, f) for f in _INT_FIELDS] for it in items], dtype=np.int64)
        floats = np.array(
            [[getattr(it, f) for f in _FLOAT_FIELDS] for it in items], dtype=np.float64
        )
        names: dict[str | None, int] = {}
        codes = np.array(
            [[names.setdefault(getattr(it, f), len(names)) for f in _NAME_FIELDS] for it in items],
            dtype=np.int32,
        )
        flags = np.zeros(n, dtype=np.int64)
        texts: list[bytes] = []
        given = {"answer_ngram_ids": answer_ngram_ids, "passage_ngram_ids": passage_ngram_ids}
        csr: dict[str, list[Any]] = {f: [] for f in _CSR_FIELDS if given.get(f) is None}
        for i, it in enumerate(items):
            bits = _NGRAM_INDEXED if it.ngram_indexed else 0
            q_words, a_words = " ".join(it.question_words), " ".join(it.answer_words)
            if q_words == it.question_text:
                bits |= _QWORDS_ARE_TEXT
                q_words = ""
            if a_words == (it.answer_text or ""):
                bits |= _AWORDS_ARE_TEXT
                a_words = ""
            answer = it.answer_tokens if answers is None else answers[i]
            bits |= _HAS_ANSWER if answer is not None else 0
            has_passage = it.passage_token_set is not None or (
                passage_sets is not None and i in passage_sets
            )
            bits |= _HAS_PASSAGE if has_passage else 0
            bits |= _ANSWER_TEXT if it.answer_text is not None else 0
            bits |= _PASSAGE_TEXT if it.passage_text is not None else 0
            bits |= _FINGERPRINT if it.fingerprint is not None else 0
            flags[i] = bits
            for text in (
                it.fingerprint or "",
                it.question_text,
                it.answer_text or "",
                it.passage_text or "",
                q_words,
                a_words,
                " ".join(it.question_key_words),
            ):
                texts.append(text.encode("utf-8", "surrogatepass"))
            csr["answer_tokens"].append(_EMPTY if answer is None else answer)
            if passage_sets is not None:
                csr["passage_token_set"].append(passage_sets.get(i, _EMPTY))
            else:
                csr["passage_token_set"].append(sorted(it.passage_token_set or ()))
            if answer_ngram_ids is None:
                csr["answer_ngram_ids"].append(sorted(it.answer_ngram_ids))
            if passage_ngram_ids is None:
                csr["passage_ngram_ids"].append(sorted(it.passage_ngram_ids))
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in texts], out=offsets[1:])
        columns: dict[str, Any] = {
            "ints": ints.reshape(n, len(_INT_FIELDS)),
            "floats": floats.reshape(n, len(_FLOAT_FIELDS)),
            "codes": codes.reshape(n, len(_NAME_FIELDS)),
            "names": list(names),
            "flags": flags,
            "text_data": np.frombuffer(b"".join(texts), dtype=np.uint8),
            "text_offsets": offsets,
        }
        for name, rows in csr.items():
            bounds = np.zeros(n + 1, dtype=np.int64)
            np.cumsum([len(r) for r in rows], out=bounds[1:])
            arrays = [np.asarray(r, dtype=np.int32) for r in rows]
            columns[name] = (bounds, np.concatenate([_EMPTY, *arrays]))
        for name, got in given.items():
            if got is not None:
                columns[name] = (got[0].astype(np.int64), got[1].astype(np.int32))
        return cls(columns)

    def __len__(self) -> int:
        return len(self.columns["flags"])

    @property
    def question_idf_sums(self) -> np.ndarray:
        return self.columns["floats"][:, 0]

    @property
    def ngram_indexed(self) -> np.ndarray:
        return (self.columns["flags"] & _NGRAM_INDEXED).astype(bool)

    def __getitem__(self, i: int) -> EvalItem:  # type: ignore[override]
        got = self._cache.get(i)
        if got is None:
            if not 0 <= i < len(self):
                raise IndexError(i)
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            got = self._cache[i] = self._make(i)
        return got

    def __iter__(self) -> Iterator[EvalItem]:
        return (self._make(i) for i in range(len(self)))

    def _csr(self, name: str, i: int) -> list[int]:
        bounds, flat = self.columns[name]
        return flat[bounds[i] : bounds[i + 1]].tolist()

    def _make(self, i: int) -> EvalItem:
        c = self.columns
        ints = dict(zip(_INT_FIELDS, c["ints"][i].tolist(), strict=True))
        floats = dict(zip(_FLOAT_FIELDS, c["floats"][i].tolist(), strict=True))
        names = {
            f: c["names"][k] for f, k in zip(_NAME_FIELDS, c["codes"][i].tolist(), strict=True)
        }
        bits = int(c["flags"][i])
        at = c["text_offsets"][_TEXTS * i : _TEXTS * i + _TEXTS + 1].tolist()
        raw = c["text_data"][at[0] : at[-1]].tobytes()
        base = at[0]
        fingerprint, question, answer, passage, q_words, a_words, q_key_words = (
            raw[a - base : b - base].decode("utf-8", "surrogatepass")
            for a, b in itertools.pairwise(at)
        )
        if bits & _QWORDS_ARE_TEXT:
            q_words = question
        if bits & _AWORDS_ARE_TEXT:
            a_words = answer
        answer_tokens = self._csr("answer_tokens", i) if bits & _HAS_ANSWER else None
        return EvalItem(
            item_id=i,
            fingerprint=fingerprint if bits & _FINGERPRINT else None,
            question_text=question,
            answer_text=answer if bits & _ANSWER_TEXT else None,
            passage_text=passage if bits & _PASSAGE_TEXT else None,
            answer_tokens=answer_tokens,
            answer_token_set=frozenset(answer_tokens or ()),
            passage_token_set=(
                frozenset(self._csr("passage_token_set", i)) if bits & _HAS_PASSAGE else None
            ),
            answer_ngram_ids=frozenset(self._csr("answer_ngram_ids", i)),
            passage_ngram_ids=frozenset(self._csr("passage_ngram_ids", i)),
            ngram_indexed=bool(bits & _NGRAM_INDEXED),
            question_words=tuple(q_words.split()),
            question_key_words=tuple(q_key_words.split()),
            answer_words=tuple(a_words.split()),
            **ints,
            **floats,
            **names,
        )

    def __getstate__(self) -> dict:
        return {"columns": self.columns}

    def __setstate__(self, state: dict) -> None:
        self.columns = state["columns"]
        self._cache = {}


@dataclass
class ReferenceIndex:
    """Everything detection needs; built once per job and shared read-only with workers."""

    options: DetectOptions
    tokenizer: Tokenizer
    items: ItemTable
    question_ngrams: NgramTable  # n-gram -> n-gram id (and id -> items)
    ngram_docs: Postings  # n-gram id -> item ids
    ngram_idf: np.ndarray
    hot: frozenset[int]  # n-gram ids that never seed a cluster
    answer_ngrams: NgramTable
    answer_ngram_idf: np.ndarray
    passage_ngrams: NgramTable
    passage_ngram_idf: np.ndarray
    answer_token_idf: dict[int, float]
    prefilter: Prefilter
    stats: ReferenceStats
    anchors: WordAnchors = field(default_factory=WordAnchors)
    identity: Identity | None = None  # compat none: per-eval word evidence and templates

    @property
    def total_docs(self) -> int:
        return int(self.items.ngram_indexed.sum())


@dataclass(frozen=True)
class _QuestionPlan:
    """A question's words (interned: the items of a reference share most of their words),
    content word count, allowed edits and anchor runs, for the alignment rules."""

    words: tuple[str, ...]
    content_words: int
    edits: int
    anchors: list[tuple[int, int]]

    @classmethod
    def of(cls, question: str, options: DetectOptions) -> _QuestionPlan:
        words = tuple(map(sys.intern, question.split()))
        edits, anchors = plan_anchors(words, options)
        return cls(words, content_word_count(words), edits, anchors)


class _Builder:
    """Builds the index in batches of records, the n-gram tables in one vectorised pass."""

    def __init__(self, options: DetectOptions, tokenizer: Tokenizer, stats: ReferenceStats):
        self.o = options
        self.tok = tokenizer
        self.items: list[EvalItem] = []
        self.q_tokens: list[np.ndarray | None] = []  # per item (None: aligned only)
        self.a_tokens: list[np.ndarray | None] = []  # per item: answer n-gram source
        self.p_tokens: list[np.ndarray | None] = []  # per item: passage n-gram source
        self.answers: list[np.ndarray | None] = []  # per item: its answer's tokens, if any
        self.df_fields: list[np.ndarray] = []  # each record field's tokens
        self.stats = stats
        self.anchors = WordAnchors()
        self.anchor_runs: list[tuple[str, ...]] = []  # in order of first addition
        self.passage_sets: dict[int, np.ndarray] = {}  # item id -> its passage's tokens

    def encode_all(self, texts: list[str]) -> list[list[int]]:
        if isinstance(self.tok, WordTokenizer):
            return [self.tok.add(t) for t in texts]
        assert isinstance(self.tok, BpeTokenizer)
        return self.tok.encode_batch(texts) if texts else []

    def add(self, kept: list[EvalRecord]) -> None:
        """Encode a batch of kept records and add them as items. A question shared by several
        records (a multiple-choice item expanded per choice) is encoded and planned once."""
        if isinstance(self.tok, WordTokenizer):
            # The vocabulary grows in record order: question, answer, passage.
            encoded = []
            for r in kept:
                q = self.tok.add(r.question)
                a = self._answer_indexed(r) and self.tok.add(r.answer) or None
                pt = self._passage_indexed(r) and self.tok.add(r.passage) or None
                encoded.append((q, a, pt))
        else:
            questions = list(dict.fromkeys(r.question for r in kept))
            q_of = {
                q: np.asarray(t, dtype=np.int32)
                for q, t in zip(questions, self.encode_all(questions), strict=True)
            }
            a_texts = [r.answer for r in kept if self._answer_indexed(r)]
            p_texts = [r.passage for r in kept if self._passage_indexed(r)]
            a_iter, p_iter = iter(self.encode_all(a_texts)), iter(self.encode_all(p_texts))
            encoded = [
                (
                    q_of[r.question],
                    next(a_iter) if self._answer_indexed(r) else None,
                    next(p_iter) if self._passage_indexed(r) else None,
                )
                for r in kept
            ]
        plans: dict[str, _QuestionPlan] = {}
        keys: dict[str, int] = {}
        for r, (q, a, pt) in zip(kept, encoded, strict=True):
            q = np.asarray(q, dtype=np.int32)
            plan = template = None
            if self.o.extended:
                plan = plans.get(r.question)
                if plan is None:
                    plan = plans[r.question] = _QuestionPlan.of(r.question, self.o)
                raw = record_text(r.record, "question")
                template = keys.get(raw)
                if template is None:
                    template = keys[raw] = template_key(raw)
            self._add_item(r, q, a, pt, plan, template)

    def _answer_indexed(self, r: EvalRecord) -> bool:
        return not r.aligned_only and self.o.index_answers and r.has_answer_field and bool(r.answer)

    def _passage_indexed(self, r: EvalRecord) -> bool:
        return not r.aligned_only and self.o.index_passages and bool(r.passage)

    def _add_item(
        self,
        r: EvalRecord,
        q_tokens: np.ndarray,
        a_tokens: list[int] | None,
        p_tokens: list[int] | None,
        plan: _QuestionPlan | None,
        template: int | None,
    ) -> None:
        o = self.o
        item = EvalItem(
            item_id=len(self.items),
            **r.source,
            question_text=_snippet(r.question),
            answer_text=_snippet(r.answer) if r.has_answer_field else None,
            passage_text=_snippet(r.passage) if r.passage else None,
            question_token_length=len(q_tokens),
            unique_ngrams=0,
            ngram_indexed=not r.aligned_only,
        )
        if template is not None:
            item.template_key = template
        a_source = p_source = a_array = None
        if r.aligned_only:
            self.q_tokens.append(None)
        else:
            self.q_tokens.append(q_tokens)
            self.df_fields.append(q_tokens)
            if a_tokens is not None:
                a_array = np.asarray(a_tokens, dtype=np.int32)
                self.df_fields.append(a_array)
                if len(a_tokens) > o.short_answer_token_threshold and len(a_tokens) >= (
                    o.answer_ngram_size
                ):
                    a_source = a_array
            if p_tokens is not None:
                p_array = np.asarray(p_tokens, dtype=np.int32)
                item.passage_token_length = len(p_tokens)
                self.passage_sets[item.item_id] = sorted_unique(p_array)
                self.df_fields.append(p_array)
                if len(p_tokens) >= o.passage_ngram_size:
                    p_source = p_array
        self.answers.append(a_array)
        self.a_tokens.append(a_source)
        self.p_tokens.append(p_source)
        answer = r.answer if r.has_answer_field and o.index_answers else ""
        if plan is not None:
            words = plan.words
            item.question_words = words
            item.answer_words = tuple(map(sys.intern, answer.split()))
            item.question_content_words = plan.content_words
            item.question_edits = plan.edits
            for start, end in plan.anchors:
                run = words[start:end]
                if run not in self.anchors.by_length.get(len(run), {}):
                    self.anchor_runs.append(run)
                self.anchors.add(run, item.item_id, start)
        self.items.append(item)

    def _idf_bound(
        self,
        table: NgramTable,
        ngram_idf: np.ndarray,
        seed_ids: np.ndarray,
        hot: np.ndarray,
        idf_sums: np.ndarray,
    ) -> SeedBound | None:
        """The chunk prefilter's form of `Scanner.may_score`: the question n-grams that can
        start a cluster (`seed_ids`, the first seeds) with their items and IDF (the table's own
        arrays), per item the IDF sum a cluster needs, and the IDF of its hot n-grams (which
        clusters count but the prefilter does not look for); `idf_sums`: per item its
        question's."""
        min_q = self.o.minimum_question_idf_threshold
        if min_q <= 0 or (ngram_idf < 0).any():
            return None
        slack = np.zeros(len(idf_sums), dtype=np.float64)
        full = (table.keys != -1).all(axis=1)
        for nid in hot[full[hot]].tolist():
            np.add.at(slack, table.docs(nid), ngram_idf[nid])
        needs = np.array([x * min_q for x in idf_sums.tolist()], dtype=np.float64)
        return SeedBound(
            offsets=table.offsets,
            groups=table.postings,
            weights=ngram_idf,
            needs=needs,
            slack=slack,
            rows=seed_ids.astype(np.int32),
        )

    def finish(self) -> ReferenceIndex:
        o, items = self.o, self.items
        total = sum(1 for item in items if item.ngram_indexed)
        n = o.ngram_size
        q_table, q_ids, q_spans = NgramTable.build(self.q_tokens, n)
        self.q_tokens = []
        ngram_idf = _idf(q_table.df, total)
        # Per item: its distinct n-gram ids ascending, their IDF summed in that order (a
        # Python sum per item: the rounding the scores have always had).
        q_bounds, q_flat = _distinct_per_item(q_ids, q_spans, len(items))
        del q_ids
        for item, a, b in zip(items, q_bounds.tolist(), q_bounds[1:].tolist(), strict=False):
            item.unique_ngrams = b - a
            item.question_idf_sum = sum(ngram_idf[q_flat[a:b]].tolist())
        del q_flat
        a_table, a_ids, a_spans = NgramTable.build(self.a_tokens, o.answer_ngram_size)
        p_table, p_ids, p_spans = NgramTable.build(self.p_tokens, o.passage_ngram_size)
        self.a_tokens = self.p_tokens = []
        a_idf, p_idf = _idf(a_table.df, total), _idf(p_table.df, total)
        a_sets = _distinct_per_item(a_ids, a_spans, len(items))
        p_sets = _distinct_per_item(p_ids, p_spans, len(items))
        del a_ids, a_spans, p_ids, p_spans
        for (bounds, flat), idf, name in (
            (a_sets, a_idf, "answer_idf_total"),
            (p_sets, p_idf, "passage_idf_total"),
        ):
            for i in np.flatnonzero(np.diff(bounds)).tolist():
                setattr(items[i], name, sum(idf[flat[bounds[i] : bounds[i + 1]]].tolist()))
        del bounds, flat
        token_df = _token_df(self.df_fields)
        self.df_fields = []
        given = [a for a in self.answers if a is not None]
        answer_tokens = sorted_unique(np.concatenate(given)) if given else np.zeros(0, np.int32)
        del given
        answer_token_idf = {
            t: math.log(total / int(token_df[t]))
            for t in answer_tokens.tolist()
            if t < len(token_df) and token_df[t]
        }
        hot_threshold = max(int(math.sqrt(self.stats.indexed)) * 2, o.hot_ngram_min_docs)
        hot_ids = np.flatnonzero(q_table.df > hot_threshold)
        hot = frozenset(hot_ids.tolist())
        self.stats.hot_ngrams = len(hot)
        identity = None
        if o.extended:
            identity = build_identity(
                (it.item_id, it.eval_key, it.instance, it.question_words, it.template_key)
                for it in items
            )
        question_df = collections.Counter(w for it in items for w in set(it.question_words))
        for it in items:
            if it.question_words:
                it.question_key_words = key_words(it.question_words, it.question_edits, question_df)
        del question_df
        # The items as columns before the prefilter is built: their objects are freed first.
        table = ItemTable.of(items, self.passage_sets, a_sets, p_sets, self.answers)
        del items, a_sets, p_sets
        self.items, self.passage_sets, self.answers = [], {}, []
        # The scan looks up windows of exactly n tokens: only those can start a cluster.
        full = (q_table.keys != -1).all(axis=1) if len(q_table) else np.zeros(0, dtype=bool)
        is_seed = full.copy()
        is_seed[hot_ids] = False
        seed_ids = np.flatnonzero(is_seed)
        # compat none: an aligned question keeps one of its anchors intact.
        extra = np.zeros((0, n), dtype=np.int32)
        if self.anchor_runs:
            rows = _distinct_rows(
                padded_rows(self.encode_all([" ".join(run) for run in self.anchor_runs]))
            )
            known = q_table.row_ids(rows)
            is_new = known < 0
            is_new[~is_new] = ~is_seed[known[~is_new]]
            extra = rows[is_new]
            del rows, known

        def blocks() -> Iterator[np.ndarray]:
            yield from _row_blocks(q_table.keys, seed_ids)
            if len(extra):
                yield extra

        word_anchors = sorted(run for runs in self.anchors.by_length.values() for run in runs)
        bound = self._idf_bound(q_table, ngram_idf, seed_ids, hot_ids, table.question_idf_sums)
        prefilter = build_prefilter(seed_bytes(blocks, self.tok), self.tok, word_anchors, bound)
        return ReferenceIndex(
            identity=identity,
            options=o,
            tokenizer=self.tok,
            items=table,
            question_ngrams=q_table,
            ngram_docs=Postings(q_table),
            ngram_idf=ngram_idf,
            hot=hot,
            answer_ngrams=a_table,
            answer_ngram_idf=a_idf,
            passage_ngrams=p_table,
            passage_ngram_idf=p_idf,
            answer_token_idf=answer_token_idf,
            prefilter=prefilter,
            stats=self.stats,
            anchors=self.anchors,
        )


def _idf(df: np.ndarray, total: int) -> np.ndarray:
    """ln(total / df) per entry (math.log, once per distinct df: the values the scores have
    always used)."""
    values, inverse = np.unique(df, return_inverse=True)
    logs = np.array([math.log(total / d) for d in values.tolist()], dtype=np.float64)
    return logs[inverse.reshape(-1)]


def _distinct_pairs(
    ids: np.ndarray, spans: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """(item, id) of every distinct id of each item, sorted by item then id."""
    lengths = spans[:, 1] - spans[:, 0]
    owner = np.repeat(np.arange(n_items, dtype=np.int64), lengths)
    width = int(ids.max(initial=0)) + 1
    pairs = sorted_unique(owner * width + ids)
    return pairs // width, pairs % width


def _row_blocks(matrix: np.ndarray, ids: np.ndarray) -> Iterator[np.ndarray]:
    """The rows `ids` of `matrix`, a slice at a time (never all at once)."""
    for lo in range(0, len(ids), 1 << 18):
        yield matrix[ids[lo : lo + (1 << 18)]]


def _distinct_rows(rows: np.ndarray) -> np.ndarray:
    """The distinct rows in the order of their tuples (-1 padding sorts a prefix first)."""
    if not len(rows):
        return rows
    rows = rows[np.lexsort(rows.T[::-1])]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    return rows[new]


def _distinct_per_item(
    ids: np.ndarray, spans: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per item, its distinct ids ascending (from the table's window ids and spans), as CSR:
    item i's are `flat[bounds[i]:bounds[i + 1]]`."""
    pair_items, pair_ids = _distinct_pairs(ids, spans, n_items)
    bounds = np.searchsorted(pair_items, np.arange(n_items + 1))
    return bounds, pair_ids.astype(np.int32)


def _token_df(fields: list[np.ndarray]) -> np.ndarray:
    """Per token id, in how many record fields it occurs (Decon counts once per field)."""
    if not fields:
        return np.zeros(0, dtype=np.int64)
    tokens = np.concatenate(fields)
    owner = np.repeat(np.arange(len(fields), dtype=np.int64), [len(f) for f in fields])
    width = int(tokens.max(initial=0)) + 1
    distinct = sorted_unique(owner * width + tokens)
    return np.bincount(distinct % width)


def _snippet(text: str) -> str:
    """The first 1000 words of a normalised text (single spaces: the text itself if shorter)."""
    return text if text.count(" ") < 1000 else " ".join(text.split()[:1000])


def build_index(records: Iterable[tuple[str, int, dict]], options: DetectOptions) -> ReferenceIndex:
    """Build the index from (file name, line number, record) triples."""
    return _build(records, options, ReferenceStats())


def load_index(path: Path, options: DetectOptions) -> ReferenceIndex:
    """Read every reference file under `path` and build the index."""
    stats = ReferenceStats()
    return _build(read_records(path, stats), options, stats)


def _build(
    records: Iterable[tuple[str, int, dict]], options: DetectOptions, stats: ReferenceStats
) -> ReferenceIndex:
    with _no_gc_pauses():
        builder = _Builder(options, get_tokenizer(options.tokenizer), stats)
        for kept in kept_records(records, options, builder.tok, stats):
            builder.add(kept)
        return builder.finish()


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """The cyclic garbage collector off while the index is built: the build makes millions of
    objects and no cycles, and each full collection would walk all of them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
