"""toxic mode: eval questions paraphrased inside training documents (word-vector LSH).

Words are normalised; common function words are dropped (`toxic_skip_stopwords`). The vector
of an n-gram of the remaining words (`toxic_ngram_size`, fewer for shorter questions) is the sum
of its word vectors, so synonyms (nearby vectors) and reordering inside the n-gram barely move
it. `toxic_tables` sets of `toxic_hyperplanes` random hyperplanes turn each n-gram vector into
one sign-bit bucket per table. Words missing from the vector file, and every word containing a
digit, get a deterministic random "poison" vector `toxic_poison_scale` times longer than an
average word vector: it dominates every n-gram it is in, so a changed number or name lands in
other buckets instead of looking similar.

Projection is linear, so only the words' projections are kept (words x tables x hyperplanes):
an n-gram's projection is the sum of its words' projections, and the vector file's own width
never reaches the scan.

An eval question's n-gram is found in a window of a training document when the window has an
n-gram of the same size in the same bucket in at least one table; the score is the share of the
question's n-grams found in the best window (windows span the question's n-gram count plus a
quarter, so reordered clauses stay inside), against `toxic_threshold`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from decon.detect.evaltext import EvalQuestion, read_questions
from decon.detect.io import iter_lines
from decon.detect.match import Findings, Match, VectorEvidence
from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats
from decon.errors import UserError

_STOPWORD_TEXT = """
a an the and or but if then else of to in on at by for with from as is are was were be been
being this that these those it its he she they them his her their we our you your i me my not
no do does did have has had so than too very can could will would shall should may might must
which who whom whose what when where why how all any some such only own same into over under
about above below up down out off again further once here there both each few more most nor
just also really"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_READ_ROWS = 20000
DENSE_KEY_SPACE = 1 << 22  # bucket keys looked up in a flat array up to this many
MIN_QUESTION_WORDS = 3  # content words a question needs to be indexed
MIN_FOUND = 2  # question n-grams a match needs, whatever the share
# vector file rows parsed per numpy batch


@dataclass
class WordProjections:
    """Hyperplane projections of a vector file's words: row per word, column per hyperplane."""

    vocab: dict[str, int]
    rows: np.ndarray  # (words, tables * hyperplanes) float32
    mean_norm: float  # average word vector length (scales poison vectors)
    dim: int


def _vector_lines(path: Path) -> Iterator[str]:
    for raw in iter_lines(path):
        yield raw.decode("utf-8", errors="replace")


def load_projections(
    path: Path, planes: np.ndarray | None, options: DetectOptions
) -> WordProjections:
    """Read a fastText .vec text file (an optional "count dim" header, then "word v1 v2 ...")
    and project every usable word on the hyperplanes (`planes`: dim x columns, or None to draw
    them from `options.toxic_seed` once the width is known)."""
    vocab: dict[str, int] = {}
    chunks: list[np.ndarray] = []
    batch_words: list[str] = []
    batch_values: list[list[str]] = []
    dim = 0
    norm_sum = 0.0
    count = 0
    limit = options.toxic_max_words or None
    punct = options.punctuation_chars

    def flush() -> None:
        nonlocal norm_sum, count, planes
        if not batch_words:
            return
        try:
            values = np.array(batch_values, dtype=np.float32)
        except ValueError:
            raise UserError(f"{path}: not a fastText .vec file (bad vector values)") from None
        if planes is None:
            planes = hyperplanes(dim, options)
        norm_sum += float(np.linalg.norm(values, axis=1).sum())
        count += len(batch_words)
        for w in batch_words:
            vocab[w] = len(vocab)
        chunks.append((values @ planes).astype(np.float32))
        batch_words.clear()
        batch_values.clear()

    for line_no, line in enumerate(_vector_lines(path)):
        parts = line.rstrip().split(" ")
        if line_no == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # header
        if len(parts) < 2:
            continue
        if not dim:
            dim = len(parts) - 1
        elif len(parts) - 1 != dim:
            raise UserError(
                f"{path}:{line_no + 1}: {len(parts) - 1} values, expected {dim} (a .vec file)"
            )
        word = parts[0].lower()
        if word in vocab or normalized_words(word, punct) != [word]:
            continue  # the file's first (most frequent) casing wins; punctuated words never occur
        if word in STOPWORDS or any(ch.isdigit() for ch in word):
            continue  # never looked up (dropped, or always poison)
        batch_words.append(word)
        batch_values.append(parts[1:])
        if len(batch_words) >= _READ_ROWS:
            # A word may repeat inside one batch only in another casing; drop repeats.
            _dedupe_batch(batch_words, batch_values, vocab)
            flush()
        if limit is not None and len(vocab) + len(batch_words) >= limit:
            break
    _dedupe_batch(batch_words, batch_values, vocab)
    flush()
    if not vocab:
        raise UserError(f"{path}: no word vectors found (expected fastText .vec text)")
    columns = options.toxic_tables * options.toxic_hyperplanes
    return WordProjections(
        vocab, np.concatenate(chunks).reshape(-1, columns), norm_sum / count, dim
    )


def _dedupe_batch(words: list[str], values: list[list[str]], vocab: dict[str, int]) -> None:
    seen: set[str] = set(vocab)
    keep = []
    for i, w in enumerate(words):
        if w not in seen:
            seen.add(w)
            keep.append(i)
    if len(keep) != len(words):
        words[:] = [words[i] for i in keep]
        values[:] = [values[i] for i in keep]


def hyperplanes(dim: int, options: DetectOptions) -> np.ndarray:
    """(dim x tables*hyperplanes) Gaussian hyperplane normals from `toxic_seed`."""
    rng = np.random.default_rng(options.toxic_seed)
    columns = options.toxic_tables * options.toxic_hyperplanes
    return rng.standard_normal((dim, columns)).astype(np.float32)


def write_vec(out: TextIO, vectors: dict[str, np.ndarray]) -> None:
    """Write word vectors in fastText .vec text format (header, then one word per line)."""
    dim = len(next(iter(vectors.values()))) if vectors else 0
    out.write(f"{len(vectors)} {dim}\n")
    for word, vec in vectors.items():
        out.write(word + " " + " ".join(f"{x:.4f}" for x in vec) + "\n")


@dataclass
class _Question:
    meta: EvalQuestion
    size: int  # words per n-gram
    ngrams: int
    keys: np.ndarray  # (ngrams x tables) bucket keys
    first_gram: int = 0  # global id of its first n-gram


class ToxicDetector:
    """The toxic mode's `DocumentDetector`."""

    def __init__(
        self,
        questions: list[EvalQuestion],
        stats: ReferenceStats,
        options: DetectOptions,
        projections: WordProjections,
    ) -> None:
        self.options = options
        self.stats = stats
        self.proj = projections
        self.tables = options.toxic_tables
        self.bits = options.toxic_hyperplanes
        self.poison_cache: dict[str, np.ndarray] = {}
        self.weights = (np.uint64(1) << np.arange(self.bits, dtype=np.uint64)).astype(np.uint64)
        self.questions: list[_Question] = []
        for q in questions:
            words, _ = self._content(list(q.words))
            if len(words) < MIN_QUESTION_WORDS:
                stats.skipped_min_tokens += 1
                stats.indexed -= 1
                stats.per_eval[q.eval_key] -= 1
                continue
            # At least two n-grams per question: one found n-gram is no evidence.
            size = min(options.toxic_ngram_size, len(words) - 1)
            # Sums ignore order: n-grams of the same words are one n-gram.
            keys = np.unique(self._keys(self._rows(words), size), axis=0)
            self.questions.append(_Question(q, size, len(keys), keys))
        self.sizes = sorted({q.size for q in self.questions})
        # Every question n-gram gets a global id; `gram_question[gid]` is its question.
        # Bucket key -> global n-gram ids, as a CSR layout over the sorted distinct keys.
        gids, keys = [], []
        offset = 0
        gram_question = []
        for i, q in enumerate(self.questions):
            keys.append(q.keys.reshape(-1))
            gids.append(np.repeat(np.arange(offset, offset + q.ngrams), self.tables))
            gram_question.append(np.full(q.ngrams, i, dtype=np.int64))
            q.first_gram = offset
            offset += q.ngrams
        self.total_grams = max(offset, 1)
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        all_gids = np.concatenate(gids) if gids else np.zeros(0, np.int64)
        order = np.argsort(all_keys, kind="stable")
        self.known, starts = np.unique(all_keys[order], return_index=True)
        self.key_start = starts
        self.key_end = np.append(starts[1:], len(order))
        self.key_gids = all_gids[order]
        self.gram_question = (
            np.concatenate(gram_question) if gram_question else np.zeros(0, np.int64)
        )
        # Bucket key -> slot in `known` (-1: no question has it), as a flat array when the key
        # space is small enough (one gather instead of a binary search per key).
        key_space = (max(self.sizes, default=1) + 1) * self.tables << self.bits
        self.slot_of: np.ndarray | None = None
        if key_space <= DENSE_KEY_SPACE:
            self.slot_of = np.full(key_space, -1, dtype=np.int32)
            self.slot_of[self.known.astype(np.int64)] = np.arange(len(self.known), dtype=np.int32)

    # -- vectors ----------------------------------------------------------------------------

    def _content(self, words: list[str]) -> tuple[list[str], list[int]]:
        if not self.options.toxic_skip_stopwords:
            return words, list(range(len(words)))
        positions = [i for i, w in enumerate(words) if w not in STOPWORDS]
        return [words[i] for i in positions], positions

    def poison(self, word: str) -> np.ndarray:
        """The projection of an unknown word's random vector (deterministic per word)."""
        row = self.poison_cache.get(word)
        if row is None:
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            rng = np.random.default_rng([self.options.toxic_seed, int.from_bytes(digest, "little")])
            columns = self.tables * self.bits
            # A random direction of length scale x mean_norm: each hyperplane projection of
            # such a vector is Gaussian with that standard deviation (planes are N(0, 1)).
            scale = self.options.toxic_poison_scale * self.proj.mean_norm
            row = (rng.standard_normal(columns) * scale).astype(np.float32)
            if len(self.poison_cache) < 1_000_000:
                self.poison_cache[word] = row
        return row

    def _rows(self, words: list[str]) -> np.ndarray:
        get = self.proj.vocab.get
        idx = np.array([get(w, -1) for w in words], dtype=np.int64)
        rows = self.proj.rows[idx.clip(min=0)]
        for i in np.flatnonzero(idx < 0).tolist():
            rows[i] = self.poison(words[i])
        return rows

    def _keys(self, rows: np.ndarray, size: int) -> np.ndarray:
        """(ngrams x tables) bucket keys of the n-grams of `size` words over `rows`."""
        count = len(rows) - size + 1
        sums = rows[:count].copy()
        for j in range(1, size):
            sums += rows[j : j + count]
        bits = (sums > 0).reshape(count, self.tables, self.bits).astype(np.uint64)
        codes = bits @ self.weights
        table_ids = np.arange(self.tables, dtype=np.uint64)
        prefix = (np.uint64(size) * np.uint64(self.tables) + table_ids) << np.uint64(self.bits)
        return codes + prefix[None, :]

    # -- detection --------------------------------------------------------------------------

    def gram_hits(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document n-gram rows, question n-gram global ids) of every pair sharing a bucket
        in at least `toxic_min_tables` tables, over every indexed n-gram size."""
        out_rows, out_gids = [], []
        min_tables = self.options.toxic_min_tables
        for size in self.sizes:
            if len(rows) < size:
                continue
            keys = self._keys(rows, size)
            if self.slot_of is not None:
                slots = self.slot_of[keys.astype(np.int64)]
                r, t = np.nonzero(slots >= 0)
                k = slots[r, t]
            else:
                pos = np.searchsorted(self.known, keys).clip(max=max(len(self.known) - 1, 0))
                r, t = np.nonzero(self.known[pos] == keys)
                k = pos[r, t]
            if not len(r):
                continue
            lengths = self.key_end[k] - self.key_start[k]
            # Expand each hit into its key's question n-grams (CSR gather).
            doc_rows = np.repeat(r, lengths)
            base = np.repeat(self.key_start[k] - np.cumsum(lengths) + lengths, lengths)
            gids = self.key_gids[base + np.arange(len(doc_rows))]
            codes, counts = np.unique(
                doc_rows.astype(np.int64) * self.total_grams + gids, return_counts=True
            )
            codes = codes[counts >= min_tables]
            out_rows.append(codes // self.total_grams)
            out_gids.append(codes % self.total_grams)
        if not out_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_rows), np.concatenate(out_gids)

    def detect_batch(self, texts: list[str]) -> list[Findings]:
        return [self._detect(text) for text in texts]

    def _detect(self, text: str) -> Findings:
        """Every eval question found in `text`."""
        words = normalized_words(text, self.options.punctuation_chars)
        content, positions = self._content(words)
        if not self.questions or len(content) < self.sizes[0]:
            return Findings([], False)
        doc_rows, gids = self.gram_hits(self._rows(content))
        if not len(doc_rows):
            return Findings([], False)
        qids = self.gram_question[gids]
        order = np.lexsort((gids, doc_rows, qids))
        qids, doc_rows, gids = qids[order], doc_rows[order], gids[order]
        bounds = np.flatnonzero(np.diff(qids)) + 1
        matches = []
        for lo, hi in zip(
            np.r_[0, bounds].tolist(), np.r_[bounds, len(qids)].tolist(), strict=True
        ):
            qi = int(qids[lo])
            q = self.questions[qi]
            needed = self.options.toxic_threshold
            if hi - lo < max(MIN_FOUND, needed * q.ngrams - 1e-9):
                continue  # too few events for this question, whatever the window
            events = list(zip(doc_rows[lo:hi].tolist(), gids[lo:hi].tolist(), strict=True))
            score, first, last = self.best_window(q, events)
            if score >= needed - 1e-9 and score * q.ngrams >= MIN_FOUND:
                start = positions[first]
                end = positions[min(last + q.size - 1, len(positions) - 1)]
                matches.append((start, qi, score, end))
        out = [
            self._match(words, qi, score, start, end) for start, qi, score, end in sorted(matches)
        ]
        return Findings(out, True)

    def best_window(self, q: _Question, events: list[tuple[int, int]]) -> tuple[float, int, int]:
        """Best share of `q`'s n-grams found within a window of its length (+25%) of document
        n-grams, given (document row, question n-gram) events sorted by row; and the first
        and last document rows of that window."""
        span = q.ngrams + max(1, q.ngrams // 4)
        counts: dict[int, int] = {}  # question n-gram -> events in the window
        rows: dict[int, int] = {}  # document row -> events in the window
        best, best_first, best_last = 0, 0, 0
        lo = 0
        for r, g in events:
            counts[g] = counts.get(g, 0) + 1
            rows[r] = rows.get(r, 0) + 1
            while events[lo][0] <= r - span:
                old_r, old_g = events[lo]
                counts[old_g] -= 1
                if not counts[old_g]:
                    del counts[old_g]
                rows[old_r] -= 1
                if not rows[old_r]:
                    del rows[old_r]
                lo += 1
            # One document n-gram stands for at most one question n-gram.
            found = min(len(counts), len(rows))
            if found > best:
                best, best_first, best_last = found, events[lo][0], r
        return best / q.ngrams, best_first, best_last

    def _match(self, words: list[str], qi: int, score: float, start: int, end: int) -> Match:
        q = self.questions[qi]
        text = " ".join(words[start : end + 1])
        return Match(q.meta, score, start, end, text, VectorEvidence(eval_ngrams=q.ngrams))


def load_toxic(reference: Path, options: DetectOptions) -> ToxicDetector:
    """Read the word vectors (`options.toxic_vectors`, a local file here) and the eval
    questions under `reference`, and index them (once per job)."""
    source = options.toxic_vectors
    if not source:
        raise UserError("toxic_vectors: required in toxic mode (a fastText .vec path)")
    if source.startswith("s3://"):
        raise UserError(f"toxic_vectors: {source}: fetch S3 vectors first (decon run does)")
    path = Path(source.removeprefix("file://"))
    if not path.is_file():
        raise UserError(f"toxic_vectors: {path}: no such file")
    questions, stats = read_questions(reference, options)
    if not options.toxic_hyperplanes:
        options = dataclasses.replace(
            options, toxic_hyperplanes=auto_hyperplanes(questions, options)
        )
    projections = load_projections(path, None, options)
    return ToxicDetector(questions, stats, options, projections)


def auto_hyperplanes(questions: list[EvalQuestion], options: DetectOptions) -> int:
    """Sign bits per bucket for `toxic_hyperplanes = 0`: about two buckets per indexed question
    n-gram in each table (at least 12), so that a bucket rarely holds more than one n-gram and
    the cost of a lookup stays flat as the reference grows. More bits cost recall on
    paraphrases (each bit is one more chance for a synonym to flip a sign)."""
    grams = sum(max(1, sum(w not in STOPWORDS for w in q.words) - 1) for q in questions)
    return max(12, min(24, math.ceil(math.log2(max(grams, 1))) + 1))
