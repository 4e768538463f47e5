"""minhash mode: near-duplicate eval questions inside training documents.

Eval questions and training text become shingles (`minhash_shingle_size` consecutive tokens
of the `tokenizer`: words or BPE tokens), hashed to 32 bits. Questions get datasketch MinHash
signatures in bulk (`MinHash.bulk`) and go into one `MinHashLSH` index, built once per job.

A question is short and a training document long, so documents are cut into windows sized to
the questions: questions are grouped in length classes (a ladder growing by 25%), and each
class slides windows of (class length + stride) shingles with a stride of a quarter class
length, so every occurrence of a question lies wholly inside one window. Window signatures are
vectorised numpy minima over the document's permuted shingle hashes (the same affine32 scheme
as datasketch, so they compare with the questions' signatures). Two filters run before any
signature is taken: a window needs `threshold x shortest question of its class` shingles that
occur in some question (lossless for the exact check below), and then an LSH hit at
`minhash_lsh_threshold`.

Every candidate (question, window) gets an exact check: the window of the question's length
around the candidate with the best Jaccard similarity (or containment of the question's
shingles) against `minhash_threshold`. The reported span is that window, in tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from decon.detect.evaltext import EvalQuestion, read_questions
from decon.detect.match import Findings, Match, ShingleEvidence
from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats
from decon.detect.tokenize import BpeTokenizer, get_tokenizer

_SCHEME = "affine32"
_MIX = np.uint64(0x9E3779B97F4A7C15)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingle_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """32-bit hashes of every run of `k` consecutive token ids (one run when fewer)."""
    ids = ids.astype(np.uint64)
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    k = min(k, n)
    count = n - k + 1
    h = np.full(count, np.uint64(k), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = _splitmix64(h * _MIX + ids[j : j + count])
    return (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2 = _FMIX32
    with np.errstate(over="ignore"):
        h = h ^ (h >> s1)
        h = h * m1
        h = h ^ (h >> s2)
        h = h * m2
        return h ^ (h >> s1)


def permuted_hashes(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(shingles x num_perm) values whose column minima are datasketch affine32 signatures."""
    with np.errstate(over="ignore"):
        return _fmix32(hashes)[:, None] * a[None, :] + b[None, :]


def _identity_hash(value: Any) -> int:
    return int(value)


@dataclass(frozen=True)
class SizeClass:
    """Questions of `min_len`..`max_len` shingles, matched in windows of `window` shingles."""

    min_len: int
    max_len: int
    stride: int
    known: np.ndarray  # sorted distinct shingle hashes of the class's questions

    @property
    def window(self) -> int:
        return self.max_len + self.stride


def length_ladder(top: int) -> list[int]:
    """Class upper bounds: 1, 2, 3, ... growing by 25% from 4 on, up to at least `top`."""
    ladder = [1]
    while ladder[-1] < top:
        ladder.append(max(ladder[-1] + 1, int(ladder[-1] * 1.25)))
    return ladder


def size_classes(shingles: list[np.ndarray]) -> list[SizeClass]:
    """Length classes covering the questions (given as their shingle hash arrays)."""
    ladder = length_ladder(max((len(h) for h in shingles), default=1))
    groups: dict[int, list[np.ndarray]] = {}
    for h in shingles:
        groups.setdefault(next(v for v in ladder if v >= len(h)), []).append(h)
    return [
        SizeClass(min(len(h) for h in hs), top, max(1, top // 4), np.unique(np.concatenate(hs)))
        for top, hs in sorted(groups.items())
    ]


def _band_digests(sigs: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """(rows x bands) 64-bit digests of each band of each signature row."""
    out = np.empty((sigs.shape[0], len(bands)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, (start, end) in enumerate(bands):
            d = np.full(sigs.shape[0], np.uint64(i), dtype=np.uint64)
            for col in range(start, end):
                d = _splitmix64(d * _MIX + sigs[:, col].astype(np.uint64))
            out[:, i] = d
    return out


@dataclass
class _Question:
    meta: EvalQuestion
    shingles: frozenset[int]
    length: int  # shingle positions


@dataclass
class _Doc:
    hashes: np.ndarray  # shingle hashes, one per position
    render: Callable[[int, int], str]  # text of tokens [start, end)


class MinHashDetector:
    """The minhash mode's `DocumentDetector`."""

    def __init__(
        self, questions: list[EvalQuestion], stats: ReferenceStats, options: DetectOptions
    ):
        self.options = options
        self.stats = stats
        self.k = options.minhash_shingle_size
        self.tokenizer = get_tokenizer(options.tokenizer)
        self.vocab: dict[str, int] = {}
        self.questions: list[_Question] = []
        hashes = []
        for q in questions:
            ids = self._question_ids(q.words)
            if len(ids) < self.k:  # no shingle of the document's size
                stats.skipped_min_tokens += 1
                stats.indexed -= 1
                stats.per_eval[q.eval_key] -= 1
                continue
            h = shingle_hashes(ids, self.k)
            hashes.append(h)
            self.questions.append(_Question(q, frozenset(h.tolist()), len(h)))
        perm = MinHash(num_perm=options.minhash_num_perm, seed=options.minhash_seed)
        self.a, self.b = (np.asarray(x, dtype=np.uint32) for x in perm.permutations)
        self.lsh = MinHashLSH(
            threshold=options.minhash_lsh_threshold, num_perm=options.minhash_num_perm
        )
        signatures = MinHash.bulk(
            [h.tolist() for h in hashes],
            num_perm=options.minhash_num_perm,
            seed=options.minhash_seed,
            hashfunc=_identity_hash,
        )
        with self.lsh.insertion_session() as session:
            for i, sig in enumerate(signatures):
                session.insert(i, LeanMinHash(sig))
        self.bands = list(self.lsh.hashranges)
        # Band digests of the indexed signatures: windows whose digests miss every one of
        # them cannot share an LSH bucket, so only the rest are looked up in `self.lsh`.
        stacked = np.array([s.hashvalues for s in signatures], dtype=np.uint32).reshape(
            len(signatures), options.minhash_num_perm
        )
        self.band_digests = np.unique(_band_digests(stacked, self.bands))
        self.classes = size_classes(hashes)
        # Every question shingle once, with a bit per length class it occurs in: one binary
        # search per document position serves every class.
        self.known = (
            np.unique(np.concatenate([c.known for c in self.classes]))
            if hashes
            else (np.zeros(1, np.uint32))
        )
        self.known_classes = np.zeros(len(self.known), dtype=np.uint64)
        for i, c in enumerate(self.classes):
            self.known_classes[np.searchsorted(self.known, c.known)] |= np.uint64(1) << np.uint64(
                i % 64
            )

    # -- tokens -----------------------------------------------------------------------------

    def _question_ids(self, words: tuple[str, ...]) -> np.ndarray:
        if isinstance(self.tokenizer, BpeTokenizer):
            return np.asarray(self.tokenizer.encode(" ".join(words)), dtype=np.int64)
        ids = [self.vocab.setdefault(w, len(self.vocab) + 1) for w in words]
        return np.asarray(ids, dtype=np.int64)

    def _doc(self, text: str) -> _Doc:
        words = normalized_words(text, self.options.punctuation_chars)
        if isinstance(self.tokenizer, BpeTokenizer):
            tok = self.tokenizer
            tokens = tok.encode(" ".join(words)) if words else []
            ids = np.asarray(tokens, dtype=np.int64)
            return _Doc(shingle_hashes(ids, self.k), lambda s, e: tok.decode(tokens[s:e]).strip())
        get = self.vocab.get
        ids = np.array([get(w, 0) for w in words], dtype=np.int64)
        unknown = ids == 0
        # Every unknown word is a distinct token no question contains.
        ids[unknown] = -1 - np.flatnonzero(unknown)
        return _Doc(shingle_hashes(ids, self.k), lambda s, e: " ".join(words[s:e]))

    # -- detection --------------------------------------------------------------------------

    def candidate_windows(self, hashes: np.ndarray) -> list[tuple[int, int]]:
        """[start, end) shingle windows worth a signature: for some length class, at least
        `threshold x shortest question` shingles that occur in the class's questions."""
        n = len(hashes)
        if n == 0:
            return []
        threshold = self.options.minhash_threshold
        windows: set[tuple[int, int]] = set()
        pos = np.searchsorted(self.known, hashes).clip(max=len(self.known) - 1)
        class_bits = np.where(self.known[pos] == hashes, self.known_classes[pos], np.uint64(0))
        if not class_bits.any():
            return []
        # (positions x 64) hit flags, column i for class i (mod 64), and their totals.
        flags = np.unpackbits(class_bits.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
        totals = flags.sum(axis=0)
        for i, c in enumerate(self.classes):
            need = max(1, int(np.ceil(threshold * c.min_len - 1e-9)))
            if totals[i % 64] < need:
                continue
            hit = flags[:, i % 64]
            hits = np.concatenate(([0], np.cumsum(hit)))
            starts = np.arange(0, max(1, n - c.window + c.stride), c.stride)
            ends = np.minimum(starts + c.window, n)
            good = (hits[ends] - hits[starts]) >= need
            windows.update(zip(starts[good].tolist(), ends[good].tolist(), strict=True))
        return sorted(windows)

    def lsh_candidates(self, perm: np.ndarray, windows: list[tuple[int, int]]) -> list[list[int]]:
        """Question indexes sharing an LSH bucket with each window's signature."""
        sigs = np.stack([perm[start:end].min(axis=0) for start, end in windows])
        digests = _band_digests(sigs, self.bands)
        pos = np.searchsorted(self.band_digests, digests).clip(max=len(self.band_digests) - 1)
        maybe = self.band_digests[pos] == digests
        out: list[list[int]] = [[] for _ in windows]
        seed = self.options.minhash_seed
        for w in np.flatnonzero(maybe.any(axis=1)).tolist():
            sig = LeanMinHash(seed=seed, hashvalues=sigs[w], scheme=_SCHEME)
            out[w] = self.lsh.query(sig)
        return out

    def best_window(self, q: _Question, hashes: list[int], lo: int, hi: int) -> tuple[float, int]:
        """Best score of a window of the question's length inside [lo, hi), and its start."""
        length = min(q.length, hi - lo)
        wanted = q.shingles
        counts: dict[int, int] = {}
        inter = 0
        best, best_start = -1.0, lo
        containment = self.options.minhash_metric == "containment"
        size = len(wanted)
        for i in range(lo, hi):
            h = hashes[i]
            c = counts.get(h, 0)
            counts[h] = c + 1
            if c == 0 and h in wanted:
                inter += 1
            start = i - length + 1
            if start < lo:
                continue
            if start > lo:
                old = hashes[start - 1]
                c = counts[old] - 1
                if c:
                    counts[old] = c
                else:
                    del counts[old]
                    if old in wanted:
                        inter -= 1
            score = inter / size if containment else inter / (size + len(counts) - inter)
            if score > best:
                best, best_start = score, start
        return best, best_start

    def detect_batch(self, texts: list[str]) -> list[Findings]:
        return [self._detect(text) for text in texts]

    def _detect(self, text: str) -> Findings:
        """Every eval question found in `text`."""
        doc = self._doc(text)
        windows = self.candidate_windows(doc.hashes)
        if not windows:
            return Findings([], False)
        perm = permuted_hashes(doc.hashes, self.a, self.b)
        regions: dict[int, list[int]] = {}
        candidates = self.lsh_candidates(perm, windows)
        for (start, end), items in zip(windows, candidates, strict=True):
            for item_id in items:
                region = regions.setdefault(item_id, [start, end])
                region[0] = min(region[0], start)
                region[1] = max(region[1], end)
        hashes = doc.hashes.tolist()
        n = len(hashes)
        found = []
        for item_id in sorted(regions):
            q = self.questions[item_id]
            lo, hi = regions[item_id]
            lo, hi = max(0, lo - q.length), min(n, hi + q.length)
            score, start = self.best_window(q, hashes, lo, hi)
            if score >= self.options.minhash_threshold:
                found.append((start, item_id, score, min(q.length, hi - lo)))
        return Findings([self._match(doc, *f) for f in sorted(found)], True)

    def _match(self, doc: _Doc, start: int, item_id: int, score: float, length: int) -> Match:
        q = self.questions[item_id]
        end = start + length - 1 + self.k - 1  # inclusive token index
        metric = (
            "containment" if self.options.minhash_metric == "containment" else "jaccard_similarity"
        )
        evidence = ShingleEvidence(metric=metric, eval_shingles=len(q.shingles))
        return Match(q.meta, score, start, end, doc.render(start, end + 1), evidence)


def load_minhash(reference: Path, options: DetectOptions) -> MinHashDetector:
    """Read the eval questions under `reference` and index them (once per job)."""
    questions, stats = read_questions(reference, options)
    return MinHashDetector(questions, stats, options)
