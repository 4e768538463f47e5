"""The fast paths of the simple-mode scan give exactly what the straightforward code gives.

Kept here: the plain versions (every position probed one by one, every anchor run looked up
at every position, the full edit-distance programme). The detector's findings on a corpus of
real eval items must be identical with the plain versions patched in.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable

import pytest

from decon.detect import alignment_rules
from decon.detect.alignment_rules import align_question, anchor_candidates, candidates_at
from decon.detect.ngram_clusters import Cluster, Scanner
from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.pipeline import detect_chunk
from decon.detect.reference import ReferenceIndex, build_index, key_words
from decon.detect.report import report_line
from decon.detect.simple import SimpleDetector
from fakes.detect_one import detect_text


def plain_align_question(
    question: tuple[str, ...], words: list[str], lo: int, hi: int, max_edits: int
) -> tuple[int, int, int] | None:
    seg = words[lo:hi]
    m = len(seg)
    prev = [0] * (m + 1)
    prev_start = list(range(m + 1))
    for i, w in enumerate(question, 1):
        cur = [i] * (m + 1)
        cur_start = [0] * (m + 1)
        best = i
        for j in range(1, m + 1):
            sub = prev[j - 1] + (seg[j - 1] != w)
            dele = prev[j] + 1
            ins = cur[j - 1] + 1
            if sub <= dele and sub <= ins:
                c, st = sub, prev_start[j - 1]
            elif dele <= ins:
                c, st = dele, prev_start[j]
            else:
                c, st = ins, cur_start[j - 1]
            cur[j] = c
            cur_start[j] = st
            best = min(best, c)
        if best > max_edits:
            return None
        prev, prev_start = cur, cur_start
    end = min(range(m + 1), key=lambda j: (prev[j], j))
    if prev[end] > max_edits:
        return None
    return lo + prev_start[end], lo + end, prev[end]


def plain_anchor_candidates(
    words: list[str], by_length: dict[int, dict[tuple[str, ...], list[tuple[int, int]]]]
) -> dict[int, set[int]]:
    candidates: dict[int, set[int]] = {}
    for k, table in by_length.items():
        for i in range(len(words) - k + 1):
            for item_id, offset in table.get(tuple(words[i : i + k]), ()):
                candidates.setdefault(item_id, set()).add(i - offset)
    return candidates


def plain_find_clusters(self: Scanner, ids: list[int | None]) -> list[Cluster]:
    hot, docs_of = self.index.hot, self.index.ngram_docs
    step = 1 if self.o.extended else self.o.sample_every_m_tokens
    clusters: list[Cluster] = []
    i = 0
    while i < len(ids):
        nid = ids[i]
        if nid is None:
            i += step
            continue
        if nid in hot:
            i += 1
            continue
        cluster = plain_expand(self, i, set(docs_of[nid]), ids)
        clusters.append(cluster)
        tracked = set(cluster.matches)
        end = cluster.end_idx
        j = i + 1
        while j <= end:
            jid = ids[j]
            if jid is not None and jid not in hot:
                new = docs_of[jid] - tracked
                if new:
                    sub = plain_expand(self, j, set(new), ids)
                    clusters.append(sub)
                    tracked |= new
                    end = max(end, sub.end_idx)
            j += 1
        i = max(i, end + 1)
    return clusters


def plain_expand(self: Scanner, hit: int, initial: set[int], ids: list[int | None]) -> Cluster:
    docs_of = self.index.ngram_docs
    max_misses = self.o.question_max_consecutive_misses
    matches = {d: {ids[hit]} for d in initial}
    bounds = {d: [hit, hit] for d in initial}

    def walk(direction: int) -> int:
        active = set(initial)
        misses = dict.fromkeys(initial, 0)
        cur = hit
        while active:
            if (direction < 0 and cur == 0) or (direction > 0 and cur + 1 >= len(ids)):
                break
            cur += direction
            nid = ids[cur]
            here = docs_of[nid] if nid is not None else frozenset()
            for d in list(active):
                if d in here:
                    if nid not in matches[d]:
                        matches[d].add(nid)
                        misses[d] = 0
                    bounds[d][0 if direction < 0 else 1] = cur
                else:
                    misses[d] += 1
                    if misses[d] >= max_misses:
                        active.discard(d)
        return cur

    walk(-1)
    return Cluster(matches=matches, bounds=bounds, end_idx=walk(+1))


PUNCTUATION = DetectOptions().punctuation_chars


def corpus(docs: int) -> tuple[list[tuple[str, int, dict]], list[str]]:
    """Real eval items planted whole, cut, edited, repeated and interleaved into prose."""
    from decon_synth.benchmarks import load_benchmark
    from decon_synth.edits import light_edit
    from decon_synth.text import build_filler_pool, natural_paragraphs

    rng = random.Random(31)
    items = []
    for key in ("humaneval", "gsm8k", "mmlu", "csqa"):
        got = load_benchmark(key)
        items += rng.sample(got, min(25, len(got)))
    recs = [("ref.jsonl", i, it.record(i)) for i, it in enumerate(items)]
    pool = build_filler_pool()
    texts = []
    for i in range(docs):
        parts = natural_paragraphs(pool, rng, 500)
        a, b = items[i % len(items)], rng.choice(items)
        words = a.question.split()
        cut = rng.randrange(max(1, len(words) - 6))
        plants = [
            a.question + " " + (a.answer or ""),
            " ".join(words[cut : cut + rng.randint(5, 25)]),
            (a.answer or "") + "\n" + light_edit(a.question, rng)[0],
            a.question + " " + b.question + " " + a.question,
        ]
        for _ in range(rng.randint(0, 2)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(plants))
        texts.append("\n\n".join(parts))
    return recs, texts


def findings(index: ReferenceIndex, texts: list[str]) -> list[list[dict]]:
    return [
        [report_line(m, "in.jsonl", i) for m in detect_text(t, index)[0]]
        for i, t in enumerate(texts)
    ]


@pytest.mark.parametrize("compat", ["none", "decon"])
@pytest.mark.parametrize("tokenizer", ["word", "p50k"])
def test_findings_equal_the_plain_scan(
    tokenizer: str, compat: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs, texts = corpus(120)
    options = DetectOptions(tokenizer=tokenizer, compat=compat)
    # Without the prefilter every document is scanned and every anchor looked up.
    unfiltered = build_index(recs, dataclasses.replace(options, prefilter=False))
    fast = findings(unfiltered, texts)
    monkeypatch.setattr(alignment_rules, "align_question", plain_align_question)
    monkeypatch.setattr(alignment_rules, "anchor_candidates", plain_anchor_candidates)
    monkeypatch.setattr(Scanner, "find_clusters", plain_find_clusters)
    monkeypatch.setattr(Scanner, "may_score", lambda self, ids: True)
    plain = findings(unfiltered, texts)
    assert fast == plain
    # With it (numpy prefilter, anchor marks), over a whole chunk: the same.
    lines = [json.dumps({"text": t}).encode() for t in texts]
    chunk = detect_chunk(SimpleDetector(build_index(recs, options)), "in.jsonl", 0, lines)
    by_line = dict(chunk.reports)
    assert [by_line.get(i, []) for i in range(len(texts))] == plain
    assert sum(map(len, plain)) >= (60 if compat == "none" else 20)


@pytest.mark.parametrize("compat", ["none", "decon"])
def test_clusters_equal_the_plain_scan(compat: str) -> None:
    recs, texts = corpus(60)
    index = build_index(recs, DetectOptions(compat=compat, prefilter=False))
    scanner = Scanner(index)
    expanded = pruned = 0
    for text in texts:
        tokens = index.tokenizer.encode_words(normalized_words(text, PUNCTUATION))
        ids = scanner.ngram_ids(tokens, index.options.ngram_size, index.question_ngrams)
        got = scanner.find_clusters(ids)
        assert got == plain_find_clusters(scanner, ids)
        expanded += len(got)
        if not scanner.may_score(ids):  # the document-level bound: no cluster scores
            pruned += 1
            assert all(
                scanner.score(c, d, tokens, lambda a, b: "") is None for c in got for d in c.matches
            )
    assert expanded >= 60
    assert pruned >= 5


def test_anchor_candidates_equal_the_plain_lookup() -> None:
    recs, texts = corpus(60)
    index = build_index(recs, DetectOptions())
    found = 0
    for text in texts:
        words = normalized_words(text, PUNCTUATION)
        got = anchor_candidates(words, index.anchors.by_length)
        assert got == plain_anchor_candidates(words, index.anchors.by_length)
        found += len(got)
    assert found >= 30


def edited(rng: random.Random, words: list[str], vocab: list[str], edits: int) -> list[str]:
    out = list(words)
    for _ in range(edits):
        op = rng.randrange(3) if out else 1
        at = rng.randrange(len(out) + (op == 1))
        if op == 0:
            out[at] = rng.choice(vocab)
        elif op == 1:
            out.insert(at, rng.choice(vocab))
        else:
            del out[at]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_align_question_equals_the_full_programme(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(6)]  # few words: repeats, periodic questions, near misses
    check: Callable[..., tuple[int, int, int] | None] = align_question
    hits = misses = 0
    for _ in range(400):
        question = tuple(rng.choice(vocab) for _ in range(rng.randint(1, 9)))
        if rng.random() < 0.2:
            question = (question[:2] or question) * 4
        body = edited(rng, list(question), vocab, rng.randint(0, 4))
        if rng.random() < 0.3:
            body += body
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 5))] + body
        words += [rng.choice(vocab) for _ in range(rng.randint(0, 5))]
        lo = rng.randint(0, 3)
        hi = rng.randint(lo, len(words) + 2)
        max_edits = rng.randint(0, 3)
        want = plain_align_question(question, words, lo, hi, max_edits)
        assert check(question, words, lo, hi, max_edits) == want, (question, words, lo, hi)
        hits += want is not None
        misses += want is None
    assert hits >= 50 and misses >= 50


@pytest.mark.parametrize("seed", range(4))
def test_a_text_without_the_key_words_holds_no_alignment(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(8)]
    df = {w: rng.randint(1, 50) for w in vocab}
    ruled_out = aligned = 0
    for _ in range(600):
        question = tuple(rng.choice(vocab) for _ in range(rng.randint(1, 9)))
        max_edits = rng.randint(0, 3)
        words = edited(rng, list(question), vocab, rng.randint(0, 4))
        got = plain_align_question(question, words, 0, len(words), max_edits)
        aligned += got is not None
        keys = key_words(question, max_edits, df)
        assert len(keys) == len(set(keys))
        if keys and not set(keys) & set(words):
            ruled_out += 1
            assert got is None, (question, words, keys)
        if len(question) > max_edits:
            assert sum(question.count(w) for w in keys) > max_edits
    assert ruled_out >= 25 and aligned >= 50


@pytest.mark.parametrize("tokenizer", ["word", "p50k"])
def test_unanchored_mark_means_no_anchor_occurs(tokenizer: str) -> None:
    recs, texts = corpus(80)
    index = build_index(recs, DetectOptions(tokenizer=tokenizer))
    texts += ["", "x", *(" ".join(run) for run in index.anchors.by_length[4])]
    chunk = index.prefilter.select_anchored(texts, PUNCTUATION)
    anchored = chunk.marked
    assert chunk.marks is not None and len(chunk.words) == len(chunk.marks) == len(texts)
    runs = index.prefilter.anchor_runs
    for text, places in zip(texts, chunk.marks, strict=True):
        words = normalized_words(text, PUNCTUATION)
        want = anchor_candidates(words, index.anchors.by_length)
        if places is None:
            assert want == {}
        else:
            at = [(p, runs[a]) for p, a in places]
            assert candidates_at(words, at, index.anchors.by_length) == want
    assert anchored.count(False) >= 10 and anchored.count(True) >= 50


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_chunk_bound_rejects_only_texts_no_cluster_can_score(tokenizer: str) -> None:
    """A text the chunk prefilter's IDF bound turns away fails `Scanner.may_score` too (so
    the bound loses nothing), and the bound does turn away texts holding a seed."""
    recs, texts = corpus(60)
    rng = random.Random(4)
    questions = [r["question"].split() for _, _, r in recs]
    for _ in range(120):  # prose with stray runs of 5 to 9 question words
        words = (texts[rng.randrange(60)]).split()[:200]
        for _ in range(rng.randint(1, 3)):
            q = rng.choice(questions)
            at = rng.randrange(max(1, len(q) - 5))
            words.insert(rng.randrange(len(words)), " ".join(q[at : at + rng.randint(5, 9)]))
        texts.append(" ".join(words))
    index = build_index(recs, DetectOptions(tokenizer=tokenizer))
    pf, tok, n = index.prefilter, index.tokenizer, index.options.ngram_size
    assert pf.bound is not None
    bounded = pf.chunk.select_marked(texts, PUNCTUATION, bound=pf.bound).selected
    unbounded = pf.chunk.select_marked(texts, PUNCTUATION).selected
    scanner = Scanner(index)
    turned_away = 0
    for text, with_bound, without in zip(texts, bounded, unbounded, strict=True):
        assert without or not with_bound
        if not with_bound:
            words = normalized_words(text, PUNCTUATION)
            tokens = tok.encode_words(words) if tokenizer == "word" else tok.encode(" ".join(words))
            assert not scanner.may_score(scanner.ngram_ids(tokens, n, index.question_ngrams))
        turned_away += without and not with_bound
    assert turned_away >= 40 and sum(bounded) >= 40
