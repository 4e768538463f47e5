"""Decon's simple mode, its n-gram clusters: a document's tokens in, scored matches out (pure).

Sampling: look up the question n-gram at position i; on a miss jump `sample_every_m_tokens`;
on a hot n-gram step by one; on a hit expand a cluster left and right per candidate item,
dropping an item after `question_max_consecutive_misses` consecutive misses. Every (cluster,
item) is scored by IDF-weighted question overlap, answer overlap after the question, passage
overlap before it, Decon's weights and a length-adjusted threshold.

Unlike Decon, positions inside an expanded cluster are also checked for items the cluster did
not track, so an item whose seed n-gram falls inside an earlier cluster is still found.
`compat: none` probes every position (stride 1).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import is_not

from decon.detect.match import ClusterEvidence, Match, overlap_text
from decon.detect.ngramtable import NgramTable
from decon.detect.options import DetectOptions
from decon.detect.reference import EvalItem, ReferenceIndex

W_QAP = (0.7, 0.2, 0.1)
W_QA = (0.75, 0.25)
W_QP = (0.85, 0.15)
MIN_INFORMATIVE_NGRAMS = 20.0
MIN_INFORMATIVE_ANSWER_TOKENS = 4.0


@dataclass
class Cluster:
    """Matches grown from one seed: per item the matched n-gram ids and (start, end) n-gram
    positions."""

    matches: dict[int, set[int]]
    bounds: dict[int, list[int]]
    end_idx: int


def interpolate_threshold(
    length: int, perfect_start: int, threshold_end: int, target: float
) -> float:
    """1.0 up to `perfect_start` tokens, `target` from `threshold_end`, linear between.

    A negative bound means "unset", as Decon's Option::None.
    """
    if perfect_start >= 0 and threshold_end >= 0:
        if length <= perfect_start:
            return 1.0
        if length >= threshold_end or perfect_start == threshold_end:
            return target
        ratio = (length - perfect_start) / (threshold_end - perfect_start)
        return 1.0 - (1.0 - target) * ratio
    if perfect_start >= 0:
        return 1.0 if length <= perfect_start else target
    return target


def answer_confidence(answer_token_length: int | None) -> float:
    if answer_token_length is None:
        return 1.0
    if answer_token_length < MIN_INFORMATIVE_ANSWER_TOKENS:
        return 0.5 + (answer_token_length / MIN_INFORMATIVE_ANSWER_TOKENS) * 0.5
    return 1.0


@dataclass(frozen=True)
class ScoreInputs:
    """What the contamination score of one (cluster, item) pair is made of: its IDF overlaps
    (None: the item has no answer, or no passage) and the item's lengths."""

    question_idf: float
    eval_unique_ngrams: int
    question_token_length: int
    answer_idf: float | None = None
    answer_token_length: int | None = None
    passage_idf: float | None = None
    passage_token_length: int | None = None


@dataclass(frozen=True)
class ScoringParams:
    """Decon's score settings: the contamination threshold and the perfect-match decay's
    token bounds (negative: unset)."""

    threshold: float
    decay_start: int
    decay_end: int

    @classmethod
    def of(cls, options: DetectOptions) -> ScoringParams:
        return cls(
            options.contamination_score_threshold,
            options.perfect_match_decay_start,
            options.perfect_match_decay_end,
        )


def combined_score(inputs: ScoreInputs, params: ScoringParams) -> float:
    """Decon's weighted Q/QA/QP/QAP score with its cumulative-length adjustment."""
    question_idf, eval_unique_ngrams = inputs.question_idf, inputs.eval_unique_ngrams
    answer_token_length = inputs.answer_token_length
    has_a, has_p = inputs.answer_idf is not None, inputs.passage_idf is not None
    a, p = inputs.answer_idf or 0.0, inputs.passage_idf or 0.0
    q_conf = (
        0.5 + (eval_unique_ngrams / MIN_INFORMATIVE_NGRAMS) * 0.5
        if eval_unique_ngrams < MIN_INFORMATIVE_NGRAMS
        else 1.0
    )
    if has_a and has_p:
        a_conf = answer_confidence(answer_token_length)
        wq, wa, wp = W_QAP
        if q_conf < 1.0 or a_conf < 1.0:
            q_w = wq * q_conf
            lost = wq * (1.0 - q_conf)
            a_after = wa + lost * 0.5
            p_after = wp + lost * 0.5
            a_w = a_after * a_conf
            p_w = p_after + a_after * (1 - a_conf)
            base = question_idf * q_w + a * a_w + p * p_w
        else:
            base = question_idf * wq + a * wa + p * wp
    elif has_a:
        wq, wa = W_QA
        if q_conf < 1.0:
            base = question_idf * wq * q_conf + a * (wa + wq * (1.0 - q_conf))
        else:
            base = question_idf * wq + a * wa
    elif has_p:
        wq, wp = W_QP
        if q_conf < 1.0:
            base = question_idf * wq * q_conf + p * (wp + wq * (1.0 - q_conf))
        else:
            base = question_idf * wq + p * wp
    else:
        base = question_idf
    score = min(base, 1.0)
    threshold = params.threshold
    if params.decay_start < 0 and params.decay_end < 0:
        return score
    cumulative = inputs.question_token_length
    if has_a:
        cumulative += answer_token_length or 0
    if has_p:
        cumulative += inputs.passage_token_length or 0
    required = interpolate_threshold(cumulative, params.decay_start, params.decay_end, threshold)
    if required > threshold:
        scale = threshold / required
        return score * scale + (1.0 - scale) * (1.0 if score == 1.0 else 0.0)
    return score


class Scanner:
    """Scans one document's tokens against a reference index."""

    def __init__(self, index: ReferenceIndex) -> None:
        self.index = index
        self.o = index.options
        self.scoring = ScoringParams.of(index.options)

    # -- cluster discovery ---------------------------------------------------------------
    def ngram_ids(self, tokens: list[int], n: int, table: NgramTable) -> list[int | None]:
        """The id of every n-token window of `tokens` (None: not an indexed n-gram)."""
        assert table.n == n
        return table.ids(tokens)

    def find_clusters(self, ids: list[int | None]) -> list[Cluster]:
        """Sample, expand, and (the defect fix) re-check positions inside each cluster."""
        hot = self.index.hot
        clusters: list[Cluster] = []
        if self.o.extended:
            # compat none probes every position, so no question is skipped by the stride:
            # the probes that hit are exactly the non-empty ids.
            present = list(compress(count(), map(is_not, ids, repeat(None))))
            i = 0
            for p in present:
                if p < i or ids[p] in hot:
                    continue
                i = max(p, self._cluster_at(p, ids, clusters, present) + 1)
            return clusters
        present = None  # computed at the first hit
        step = self.o.sample_every_m_tokens
        total = len(ids)
        i = 0
        while i < total:
            nid = ids[i]
            if nid is None:
                i += step
                continue
            if nid in hot:
                i += 1
                continue
            if present is None:
                present = list(compress(count(), map(is_not, ids, repeat(None))))
            i = max(i, self._cluster_at(i, ids, clusters, present) + 1)
        return clusters

    def _cluster_at(
        self, i: int, ids: list[int | None], clusters: list[Cluster], present: list[int]
    ) -> int:
        """Expand the hit at `i` and re-check the positions inside; the last position covered."""
        hot, docs_of = self.index.hot, self.index.ngram_docs
        cluster = self.expand(i, set(docs_of[ids[i]]), ids, present)  # type: ignore[index]
        clusters.append(cluster)
        tracked = set(cluster.matches)
        end = cluster.end_idx
        j = i + 1
        while j <= end:
            jid = ids[j]
            if jid is not None and jid not in hot:
                new = docs_of[jid] - tracked
                if new:
                    sub = self.expand(j, set(new), ids, present)
                    clusters.append(sub)
                    tracked |= new
                    end = max(end, sub.end_idx)
            j += 1
        return end

    def expand(
        self, hit: int, initial: set[int], ids: list[int | None], present: list[int] | None = None
    ) -> Cluster:
        """Grow a cluster from `hit` per item; `present` lists the positions whose id is not
        None (computed when not given): a run of misses is taken in one step."""
        docs_of = self.index.ngram_docs
        max_misses = self.o.question_max_consecutive_misses
        seed = ids[hit]
        matches = {d: {seed} for d in initial}
        bounds = {d: [hit, hit] for d in initial}
        total = len(ids)
        if present is None:
            present = list(compress(count(), map(is_not, ids, repeat(None))))
        n_present = len(present)

        def walk(direction: int) -> int:
            active = set(initial)
            misses = dict.fromkeys(initial, 0)
            cur = hit
            side = 0 if direction < 0 else 1
            while active:
                if direction > 0:
                    if cur + 1 >= total:
                        break
                    k = bisect.bisect_right(present, cur)
                    gap = (present[k] if k < n_present else total) - cur - 1
                else:
                    if cur == 0:
                        break
                    k = bisect.bisect_left(present, cur) - 1
                    gap = cur - (present[k] if k >= 0 else -1) - 1
                if gap:
                    # `gap` positions without an n-gram: every active item misses at each.
                    last_drop = max_misses - min(misses[d] for d in active)
                    if last_drop <= gap:
                        return cur + direction * last_drop
                    cur += direction * gap
                    for d in list(active):
                        misses[d] += gap
                        if misses[d] >= max_misses:
                            active.discard(d)
                    continue
                cur += direction
                nid = ids[cur]
                here = docs_of[nid]  # type: ignore[index]
                inter = active & here
                if inter:
                    for d in inter:
                        got = matches[d]
                        if nid not in got:
                            got.add(nid)
                            misses[d] = 0
                        bounds[d][side] = cur
                    losers = active - here
                else:
                    losers = set(active)
                for d in losers:
                    misses[d] += 1
                    if misses[d] >= max_misses:
                        active.discard(d)
            return cur

        walk(-1)
        end = walk(+1)
        return Cluster(matches=matches, bounds=bounds, end_idx=end)

    # -- scoring ---------------------------------------------------------------------------
    def may_score(self, ids: list[int | None]) -> bool:
        """False only when no cluster of the document can reach the question IDF threshold:
        a cluster's n-grams are among the document's, so their IDF summed per item bounds
        every cluster's (the margin covers the summation order), and most documents that
        pass the prefilter share one stray n-gram with an item of many."""
        min_q = self.o.minimum_question_idf_threshold
        if min_q <= 0:
            return True
        idf, docs_of = self.index.ngram_idf, self.index.ngram_docs
        reach: dict[int, float] = {}
        for nid in set(ids):
            if nid is not None:
                weight = idf[nid]
                if weight < 0:  # (IDF is ln(N/df) with df <= N: never, but the bound needs it)
                    return True
                for d in docs_of[nid]:
                    reach[d] = reach.get(d, 0.0) + weight
        idf_sums = self.index.items.question_idf_sums
        for d, total in reach.items():
            need = float(idf_sums[d]) * min_q
            if need > 0 and total >= need * (1 - 1e-9):
                return True
        return False

    def score(
        self, cluster: Cluster, item_id: int, tokens: list[int], render: Callable[[int, int], str]
    ) -> Match | None:
        """The match of `item_id` in `cluster`, or None when it scores below the thresholds;
        `render(a, b)` is the text of tokens [a, b)."""
        o, index = self.o, self.index
        item = index.items[item_id]
        n = o.ngram_size
        matched = cluster.matches[item_id]
        idf = index.ngram_idf
        q_idf = (
            sum(idf[m] for m in sorted(matched)) / item.question_idf_sum
            if item.question_idf_sum > 0
            else 0.0
        )
        min_q = o.minimum_question_idf_threshold
        if q_idf < min_q:
            return None
        required_q = interpolate_threshold(
            item.question_token_length,
            o.perfect_match_decay_start,
            o.perfect_match_decay_end,
            min_q,
        )
        if q_idf < required_q:
            return None
        start, end = cluster.bounds[item_id]
        cluster_len = end + n - 1 - start + 1
        excess = max(0, cluster_len - item.question_token_length)
        p_ratio = p_idf = None
        p_bounds = None
        if item.has_passage:
            p_ratio, p_idf, p_bounds = self.passage(item, start, tokens)
        a_ratio = a_idf = None
        a_bounds = None
        if item.has_answer:
            q_end = max(0, end + n - 1 - excess)
            a_ratio, a_idf, a_bounds = self.answer(item, q_end, tokens)
        inputs = ScoreInputs(
            question_idf=q_idf,
            eval_unique_ngrams=item.unique_ngrams,
            question_token_length=item.question_token_length,
            answer_idf=a_idf,
            answer_token_length=len(item.answer_token_set) if item.has_answer else None,
            passage_idf=p_idf,
            passage_token_length=item.passage_token_length if item.has_passage else None,
        )
        score = combined_score(inputs, self.scoring)
        if score < o.contamination_score_threshold:
            return None
        question_end = end + n - 1
        if a_bounds and a_bounds[0][0] <= question_end and cluster_len > item.question_token_length:
            question_end = max(0, a_bounds[0][0] - 1)
        has_a = bool(a_idf)
        has_p = bool(p_idf)
        kind = "question" + ("_answer" if has_a else "") + ("_passage" if has_p else "")
        reason = (
            f"contamination_score {score:.3f} >= {o.contamination_score_threshold} "
            f"(question idf overlap {q_idf:.3f} over {len(matched)} n-grams"
            + (f", answer idf overlap {a_idf:.3f}" if a_idf is not None else "")
            + (f", passage idf overlap {p_idf:.3f}" if p_idf is not None else "")
            + ")"
        )
        evidence = ClusterEvidence(
            match_kind=kind,
            reason=reason,
            idf_overlap=q_idf,
            ngram_matches=len(matched),
            cluster_token_length=cluster_len,
            length_adjusted_question_threshold=required_q,
            answer_overlap_ratio=a_ratio,
            answer_idf_overlap=a_idf,
            answer_boundaries=tuple(a_bounds) if a_bounds is not None else None,
            passage_overlap_ratio=p_ratio,
            passage_idf_overlap=p_idf,
            passage_span=p_bounds,
        )
        first = start if p_bounds is None else min(start, p_bounds[0])
        last = question_end if not a_bounds else max(question_end, a_bounds[-1][1])
        text = overlap_text((start, question_end), (first, last), len(tokens), render)
        return Match(item, score, start, question_end, text, evidence)

    def answer(
        self, item: EvalItem, q_end: int, tokens: list[int]
    ) -> tuple[float, float, list[tuple[int, int]] | None]:
        o, index = self.o, self.index
        answer = item.answer_tokens or []
        length = len(answer)
        short = length <= o.short_answer_token_threshold
        if short:
            window = o.short_answer_window_length
        else:
            window = max(length * 2, o.min_long_answer_window)
        w_start = q_end + 1
        w_end = min(w_start + window, len(tokens))
        bounds: list[tuple[int, int]] | None = None
        idf_overlap = 0.0
        if short:
            k = len(answer)
            for s in range(w_start, w_end):
                if s + k > len(tokens):
                    break
                if k and tokens[s : s + k] == answer:
                    bounds = [(s, s + k - 1)]
                    ref = sum(index.answer_token_idf.get(t, 0.0) for t in item.answer_token_set)
                    idf_overlap = 1.0 if ref > 0 else 0.0
                    break
        else:
            an = o.answer_ngram_size
            if item.answer_idf_total != 0.0 and w_end > w_start and w_end - w_start >= an:
                window_ids = index.answer_ngrams.ids(tokens[w_start:w_end])
                seen: set[int] = set()
                positions = []
                total_idf = 0.0
                for s in range(w_start, w_end - an + 1):
                    aid = window_ids[s - w_start]
                    if aid is not None and aid in item.answer_ngram_ids:
                        if aid not in seen:
                            seen.add(aid)
                            total_idf += index.answer_ngram_idf[aid]
                        positions.append((s, s + an - 1))
                if positions:
                    idf_overlap = total_idf / item.answer_idf_total
                    bounds = []
                    cs, ce = positions[0]
                    for s, e in positions[1:]:
                        if s <= ce + an:
                            ce = max(ce, e)
                        else:
                            bounds.append((cs, ce))
                            cs, ce = s, e
                    bounds.append((cs, ce))
        answer_set = item.answer_token_set
        if bounds:
            found = {t for s, e in bounds for t in tokens[s : e + 1] if t in answer_set}
        else:
            found = {t for t in tokens[w_start:w_end] if t in answer_set}
        ratio = len(found) / len(answer_set) if answer_set else 0.0
        return ratio, idf_overlap, bounds

    def passage(
        self, item: EvalItem, q_start: int, tokens: list[int]
    ) -> tuple[float, float, tuple[int, int] | None]:
        o, index = self.o, self.index
        pn = o.passage_ngram_size
        window = max(item.passage_token_length * 2, o.min_passage_distance)
        w_end = max(0, q_start - 1)
        w_start = max(0, w_end - window)
        if w_start >= w_end or w_end - w_start < pn or item.passage_idf_total == 0.0:
            return 0.0, 0.0, None
        window_ids = index.passage_ngrams.ids(tokens[w_start:w_end])
        seen: set[int] = set()
        first = last = None
        misses = 0
        total_idf = 0.0
        for s in range(w_end - pn, w_start - 1, -1):
            pid = window_ids[s - w_start]
            if pid is not None and pid in item.passage_ngram_ids:
                if pid not in seen:
                    seen.add(pid)
                    total_idf += index.passage_ngram_idf[pid]
                if first is None:
                    last = s + pn - 1
                first = s
                misses = 0
            elif first is not None:
                misses += 1
                if misses > o.passage_max_consecutive_misses:
                    break
        if first is None or last is None:
            return 0.0, 0.0, None
        passage_set = item.passage_token_set or frozenset()
        found = {t for t in tokens[first : last + 1] if t in passage_set}
        ratio = len(found) / len(passage_set) if passage_set else 0.0
        return ratio, total_idf / item.passage_idf_total, (first, last)


def cluster_matches(
    tokens: list[int], index: ReferenceIndex, render: Callable[[int, int], str]
) -> list[Match]:
    """All matches in one tokenized document: the best-scoring one per eval item, in document
    order. `render(a, b)` is the text of tokens [a, b) (for `training_overlap_text`)."""
    o = index.options
    n = o.ngram_size
    if len(tokens) < max(n, o.training_min_tokens):
        return []
    scanner = Scanner(index)
    ids = scanner.ngram_ids(tokens, n, index.question_ngrams)
    if not scanner.may_score(ids):
        return []
    best: dict[int, Match] = {}
    for cluster in scanner.find_clusters(ids):
        for item_id in sorted(cluster.matches):
            match = scanner.score(cluster, item_id, tokens, render)
            if match is None:
                continue
            prev = best.get(item_id)
            if prev is None or match.contamination_score > prev.contamination_score:
                best[item_id] = match
    return sorted(best.values(), key=lambda m: (m.start, m.item.item_id))
