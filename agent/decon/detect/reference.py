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

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from decon.detect.identity import Identity, build_identity, template_key
from decon.detect.io import is_data_file, iter_lines
from decon.detect.normalize import normalize
from decon.detect.options import DetectOptions
from decon.detect.prefilter import NgramKey, Prefilter, WeightedSeeds, build_prefilter
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


def question_chunks(words: tuple[str, ...], edits: int) -> list[tuple[int, int]]:
    """At most `edits + 1` contiguous chunks covering `words` (pigeonhole: an occurrence with
    fewer edits than chunks keeps one chunk intact), cut greedily once a chunk has its share of
    the words and a content word; a lone word must be long. No anchor is then a common word or
    a function-word run (which would make the prefilter pass most documents)."""
    target = max(2, len(words) // (edits + 1))
    chunks: list[tuple[int, int]] = []
    start = 0
    for i in range(len(words)):
        piece = words[start : i + 1]
        lone = len(piece) == 1 and target == 2 and len(piece[0]) >= LONE_ANCHOR_CHARS
        if (len(piece) >= target or lone) and content_word_count(piece):
            chunks.append((start, i + 1))
            start = i + 1
    if not chunks:
        return [(0, len(words))]
    tail = words[start:]
    if len(tail) >= 2 and content_word_count(tail):
        chunks.append((start, len(words)))
    chunks[-1] = (chunks[-1][0], len(words))
    if len(chunks) > edits + 1:
        chunks = [*chunks[:edits], (chunks[edits][0], len(words))]
    return chunks


def chunk_anchor(words: tuple[str, ...], start: int, end: int) -> tuple[int, int]:
    """The run of up to ANCHOR_WORDS words inside [start, end) with the most content letters."""
    k = min(ANCHOR_WORDS, end - start)

    def weight(i: int) -> tuple[int, int]:
        run = words[i : i + k]
        return (sum(len(w) for w in run if w not in FUNCTION_WORDS), -i)

    best = max(range(start, end - k + 1), key=weight)
    return best, best + k


def plan_anchors(
    words: tuple[str, ...], options: DetectOptions
) -> tuple[int, list[tuple[int, int]]]:
    """Allowed edits and anchor (start, end) runs for a question (no anchors: not aligned).

    Edits are capped at (anchorable chunks - 1), so no anchor is a lone function word or
    short word (which would make the prefilter pass most documents)."""
    if len(words) < MIN_ALIGNED_WORDS or content_word_count(words) < options.min_content_words:
        return 0, []
    chunks = question_chunks(words, allowed_edits(len(words), options))
    return len(chunks) - 1, [chunk_anchor(words, s, e) for s, e in chunks]


@dataclass
class WordAnchors:
    """Anchor runs per length: words -> (item id, offset of the run in the question)."""

    by_length: dict[int, dict[tuple[str, ...], list[tuple[int, int]]]] = field(default_factory=dict)

    def add(self, run: tuple[str, ...], item_id: int, offset: int) -> None:
        self.by_length.setdefault(len(run), {}).setdefault(run, []).append((item_id, offset))


@dataclass
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
    question_content_words: int = 0
    template_key: int = 0  # equal for questions made from one template (`identity`)

    @cached_property
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


@dataclass
class ReferenceStats:
    """Counts from building the index."""

    files: int = 0
    lines: int = 0
    indexed: int = 0
    skipped_min_tokens: int = 0
    aligned_only: int = 0  # short items indexed for the alignment rules only (compat none)
    skipped_min_unique_words: int = 0
    skipped_duplicates: int = 0
    skipped_no_question: int = 0
    malformed: int = 0
    hot_ngrams: int = 0
    per_eval: dict[str, int] = field(default_factory=dict)


@dataclass
class ReferenceIndex:
    """Everything detection needs; built once per job and shared read-only with workers."""

    options: DetectOptions
    tokenizer: Tokenizer
    items: list[EvalItem]
    question_ngrams: dict[NgramKey, int]  # n-gram -> n-gram id
    ngram_docs: list[frozenset[int]]  # n-gram id -> item ids
    ngram_idf: list[float]
    hot: frozenset[int]  # n-gram ids that never seed a cluster
    answer_ngrams: dict[NgramKey, int]
    answer_ngram_idf: list[float]
    passage_ngrams: dict[NgramKey, int]
    passage_ngram_idf: list[float]
    answer_token_idf: dict[int, float]
    prefilter: Prefilter
    stats: ReferenceStats
    anchors: WordAnchors = field(default_factory=WordAnchors)
    identity: Identity | None = None  # compat none: per-eval word evidence and templates

    @property
    def total_docs(self) -> int:
        return sum(1 for item in self.items if item.ngram_indexed)


def reference_files(path: Path) -> list[Path]:
    """The .json/.jsonl(.gz ...) files of a reference directory tree (or the file itself)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and is_data_file(p))


def read_records(path: Path, stats: ReferenceStats) -> Iterable[tuple[str, int, dict]]:
    """Yield (file name, line number, record) from every reference file under `path`."""
    for file in reference_files(path):
        stats.files += 1
        for line_num, raw in enumerate(iter_lines(file)):
            stripped = raw.strip()
            if not stripped or stripped.startswith(b"#"):
                continue
            stats.lines += 1
            try:
                record = json.loads(stripped)
            except ValueError:
                stats.malformed += 1
                continue
            if not isinstance(record, dict):
                stats.malformed += 1
                continue
            yield file.name, line_num, record


def record_text(record: dict, key: str) -> str:
    """The string field `key` of an eval record ("" when missing or not a string)."""
    value = record.get(key)
    return value if isinstance(value, str) else ""


def record_source(file_name: str, line_num: int, record: dict) -> dict[str, Any]:
    """The fields naming an eval record in reports: eval_key (eval_name or the file's stem
    when missing), eval_line, eval_instance_index (the line when missing), split,
    fingerprint, reference_file."""
    instance = record.get("eval_instance_index")
    split = record.get("split")
    fingerprint = record.get("fingerprint")
    return {
        "eval_key": str(record.get("eval_key") or record.get("eval_name") or _stem(file_name)),
        "eval_line": line_num,
        "eval_instance_index": instance if isinstance(instance, int) else line_num,
        "split": split if isinstance(split, str) else None,
        "fingerprint": str(fingerprint) if fingerprint is not None else None,
        "reference_file": file_name,
    }


class _Builder:
    def __init__(self, options: DetectOptions, tokenizer: Tokenizer) -> None:
        self.o = options
        self.tok = tokenizer
        self.items: list[EvalItem] = []
        self.q_ngrams: dict[NgramKey, int] = {}
        self.q_docs: list[set[int]] = []
        self.q_item_ngrams: list[set[int]] = []
        self.a_ngrams: dict[NgramKey, int] = {}
        self.a_df: list[int] = []
        self.p_ngrams: dict[NgramKey, int] = {}
        self.p_df: list[int] = []
        self.token_df: dict[int, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self.stats = ReferenceStats()
        self.anchors = WordAnchors()
        self.anchor_seeds: set[NgramKey] = set()

    def encode(self, cleaned: str) -> list[int]:
        if isinstance(self.tok, WordTokenizer):
            return self.tok.add(cleaned)
        return self.tok.encode(cleaned)

    def count_tokens(self, combined: str) -> int:
        if isinstance(self.tok, BpeTokenizer):
            tokens = self.tok.encode(combined)
            return sum(1 for t in tokens if self.tok.decode_token(t).strip(b" "))
        return len(combined.split())

    def add(self, file_name: str, line_num: int, record: dict) -> None:
        o, st = self.o, self.stats
        question = normalize(record_text(record, "question"), o.punctuation_chars)
        has_answer_field = "answer" in record
        answer = normalize(record_text(record, "answer"), o.punctuation_chars)
        passage = normalize(record_text(record, "passage"), o.punctuation_chars)
        parts = []
        if o.index_passages and passage:
            parts.append(passage)
        if question:
            parts.append(question)
        if o.index_answers and has_answer_field and answer:
            parts.append(answer)
        combined = " ".join(parts)
        too_short = bool(o.eval_min_token_length) and (
            self.count_tokens(combined) < o.eval_min_token_length
        )
        if too_short and not o.extended:
            st.skipped_min_tokens += 1
            return
        if o.eval_min_unique_word_count and len(set(combined.split())) < (
            o.eval_min_unique_word_count
        ):
            st.skipped_min_unique_words += 1
            return
        source = record_source(file_name, line_num, record)
        fingerprint = source["fingerprint"]
        if o.eval_dedup and fingerprint is not None:
            key = (source["eval_key"], fingerprint)
            if key in self.seen:
                st.skipped_duplicates += 1
                return
            self.seen.add(key)
        if not question:
            st.skipped_no_question += 1
            return
        item_id = len(self.items)
        q_tokens = self.encode(question)
        fields = {
            "item_id": item_id,
            **source,
            "question_text": _snippet(question),
            "answer_text": _snippet(answer) if has_answer_field else None,
            "passage_text": _snippet(passage) if passage else None,
            "question_token_length": len(q_tokens),
        }
        if o.extended:
            fields["template_key"] = template_key(record_text(record, "question"))
        if too_short:
            item = EvalItem(**fields, unique_ngrams=0, ngram_indexed=False)
            self._add_aligned_only(item, question, answer)
            return
        self._count_tokens_df(q_tokens)
        n = o.ngram_size
        if len(q_tokens) < n:
            windows = [tuple(q_tokens)]
        else:
            windows = [tuple(q_tokens[i : i + n]) for i in range(len(q_tokens) - n + 1)]
        ids: set[int] = set()
        for key_ in windows:
            nid = self.q_ngrams.get(key_)
            if nid is None:
                nid = self.q_ngrams[key_] = len(self.q_docs)
                self.q_docs.append(set())
            self.q_docs[nid].add(item_id)
            ids.add(nid)
        self.q_item_ngrams.append(ids)
        item = EvalItem(**fields, unique_ngrams=len(ids))
        if o.index_answers and has_answer_field and answer:
            a_tokens = self.encode(answer)
            item.answer_tokens = a_tokens
            item.answer_token_set = frozenset(a_tokens)
            self._count_tokens_df(a_tokens)
            an = o.answer_ngram_size
            if len(a_tokens) > o.short_answer_token_threshold and len(a_tokens) >= an:
                a_ids = set()
                for i in range(len(a_tokens) - an + 1):
                    key_ = tuple(a_tokens[i : i + an])
                    aid = self.a_ngrams.get(key_)
                    if aid is None:
                        aid = self.a_ngrams[key_] = len(self.a_df)
                        self.a_df.append(0)
                    a_ids.add(aid)
                for aid in a_ids:
                    self.a_df[aid] += 1
                item.answer_ngram_ids = frozenset(a_ids)
        if o.index_passages and passage:
            p_tokens = self.encode(passage)
            item.passage_token_length = len(p_tokens)
            item.passage_token_set = frozenset(p_tokens)
            self._count_tokens_df(p_tokens)
            pn = o.passage_ngram_size
            if len(p_tokens) >= pn:
                p_ids = set()
                for i in range(len(p_tokens) - pn + 1):
                    key_ = tuple(p_tokens[i : i + pn])
                    pid = self.p_ngrams.get(key_)
                    if pid is None:
                        pid = self.p_ngrams[key_] = len(self.p_df)
                        self.p_df.append(0)
                    p_ids.add(pid)
                for pid in p_ids:
                    self.p_df[pid] += 1
                item.passage_ngram_ids = frozenset(p_ids)
        self._append(item, question, answer if has_answer_field and o.index_answers else "")

    def _append(self, item: EvalItem, question: str, answer: str) -> None:
        if self.o.extended:
            words = tuple(question.split())
            item.question_words = words
            item.answer_words = tuple(answer.split())
            item.question_content_words = content_word_count(words)
            edits, offsets = plan_anchors(words, self.o)
            item.question_edits = edits
            for start, end in offsets:
                run = words[start:end]
                self.anchors.add(run, item.item_id, start)
                self.anchor_seeds.add(tuple(self.encode(" ".join(run))))
        self.items.append(item)
        self.stats.indexed += 1
        self.stats.per_eval[item.eval_key] = self.stats.per_eval.get(item.eval_key, 0) + 1

    def _add_aligned_only(self, item: EvalItem, question: str, answer: str) -> None:
        """A record under eval_min_token_length (compat none): seen by the alignment rules
        only, so it takes no part in Decon's n-gram statistics."""
        o = self.o
        self.q_item_ngrams.append(set())
        self.stats.aligned_only += 1
        self._append(item, question, answer if o.index_answers else "")

    def _count_tokens_df(self, tokens: list[int]) -> None:
        # Decon counts once per field of each record.
        for t in set(tokens):
            self.token_df[t] = self.token_df.get(t, 0) + 1

    def _idf_bound(
        self, ngram_docs: list[frozenset[int]], ngram_idf: list[float], hot: frozenset[int]
    ) -> WeightedSeeds | None:
        """The chunk prefilter's form of `Scanner.may_score`: the question n-grams that can
        start a cluster, their items and IDF, per item the IDF sum a cluster needs, and the
        IDF of its hot n-grams (which clusters count but the prefilter does not look for)."""
        min_q = self.o.minimum_question_idf_threshold
        if min_q <= 0 or any(w < 0 for w in ngram_idf):
            return None
        n = self.o.ngram_size
        keys = [key for key, nid in self.q_ngrams.items() if len(key) == n and nid not in hot]
        ids = [self.q_ngrams[key] for key in keys]
        slack = [0.0] * len(self.items)
        for key, nid in self.q_ngrams.items():
            if len(key) == n and nid in hot:
                for d in ngram_docs[nid]:
                    slack[d] += ngram_idf[nid]
        return WeightedSeeds(
            keys=keys,
            groups=[ngram_docs[i] for i in ids],
            weights=[ngram_idf[i] for i in ids],
            needs=[item.question_idf_sum * min_q for item in self.items],
            slack=slack,
        )

    def finish(self) -> ReferenceIndex:
        o = self.o
        total = sum(1 for item in self.items if item.ngram_indexed)
        ngram_docs = [frozenset(d) for d in self.q_docs]
        ngram_idf = [math.log(total / len(d)) for d in ngram_docs]
        a_idf = [math.log(total / df) for df in self.a_df]
        p_idf = [math.log(total / df) for df in self.p_df]
        for item, ids in zip(self.items, self.q_item_ngrams, strict=True):
            item.question_idf_sum = sum(ngram_idf[i] for i in sorted(ids))
            item.answer_idf_total = sum(a_idf[i] for i in sorted(item.answer_ngram_ids))
            item.passage_idf_total = sum(p_idf[i] for i in sorted(item.passage_ngram_ids))
        answer_tokens: set[int] = set()
        for item in self.items:
            answer_tokens |= item.answer_token_set
        answer_token_idf = {
            t: math.log(total / self.token_df[t]) for t in answer_tokens if self.token_df.get(t)
        }
        hot_threshold = max(int(math.sqrt(self.stats.indexed)) * 2, o.hot_ngram_min_docs)
        hot = frozenset(i for i, d in enumerate(ngram_docs) if len(d) > hot_threshold)
        self.stats.hot_ngrams = len(hot)
        # The scan looks up windows of exactly n tokens: only those can start a cluster.
        seeds = [
            key for key, nid in self.q_ngrams.items() if nid not in hot and len(key) == o.ngram_size
        ]
        # compat none: an aligned question keeps one of its anchors intact.
        seeds.extend(sorted(self.anchor_seeds - set(seeds)))
        word_anchors = sorted(run for table in self.anchors.by_length.values() for run in table)
        prefilter = build_prefilter(
            seeds, self.tok, word_anchors, self._idf_bound(ngram_docs, ngram_idf, hot)
        )
        identity = None
        if o.extended:
            identity = build_identity(
                (it.item_id, it.eval_key, it.instance, it.question_words, it.template_key)
                for it in self.items
            )
        return ReferenceIndex(
            identity=identity,
            options=o,
            tokenizer=self.tok,
            items=self.items,
            question_ngrams=self.q_ngrams,
            ngram_docs=ngram_docs,
            ngram_idf=ngram_idf,
            hot=hot,
            answer_ngrams=self.a_ngrams,
            answer_ngram_idf=a_idf,
            passage_ngrams=self.p_ngrams,
            passage_ngram_idf=p_idf,
            answer_token_idf=answer_token_idf,
            prefilter=prefilter,
            stats=self.stats,
            anchors=self.anchors,
        )


def _stem(file_name: str) -> str:
    return file_name.split(".", 1)[0]


def _snippet(text: str) -> str:
    return " ".join(text.split()[:1000])


def build_index(records: Iterable[tuple[str, int, dict]], options: DetectOptions) -> ReferenceIndex:
    """Build the index from (file name, line number, record) triples."""
    builder = _Builder(options, get_tokenizer(options.tokenizer))
    for file_name, line_num, record in records:
        builder.add(file_name, line_num, record)
    return builder.finish()


def load_index(path: Path, options: DetectOptions) -> ReferenceIndex:
    """Read every reference file under `path` and build the index."""
    builder = _Builder(options, get_tokenizer(options.tokenizer))
    for file_name, line_num, record in read_records(path, builder.stats):
        builder.add(file_name, line_num, record)
    return builder.finish()
