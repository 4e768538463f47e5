"""Word-alignment rules of the default detection (`compat: none`; pure: words in, alignments
out).

Each indexed question (short ones included) has word anchors; where an anchor occurs, the
question is aligned with at most a few word edits, then judged on the evidence that the
stretch is this item and not another:
- evidence is the item's words found in the stretch, weighted by their specificity within
  the eval (`decon.detect.identity`), so template words count for almost nothing;
- a word edit may not remove what identifies the item (the specificity an alignment loses
  must stay a small share of the question's);
- rule `question_answer_window`: its answer within a few words before, after or inside it;
  rule `question_passage_window`: its passage just before it;
- rule `question_only`: a long question with enough evidence of its own, unless it is a
  template (then only the answer or passage can tell its instances apart);
- rule `short_sentence`: a short question with enough evidence that the document reproduces
  as a unit of its own (a line, a list entry, a quoted string), checked on the original text.
Among the alignments of one document, one that a closer sibling explains (another item
aligned over the same words with fewer edits) is dropped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from decon.detect.identity import Identity
from decon.detect.match import AlignmentEvidence, Match, overlap_text
from decon.detect.options import DetectOptions
from decon.detect.reference import FUNCTION_WORDS, EvalItem, ReferenceIndex
from decon.detect.tokenize import BpeTokenizer

LONG_ANSWER_WORDS = 12  # longer answers are matched by word 3-gram overlap
LONG_ANSWER_MIN_OVERLAP = 0.5
BARE_ANSWER_WINDOW = 5  # an answer without a content word ("no", "2") must sit this close
PASSAGE_MIN_OVERLAP = 0.5  # share of a passage's word 3-grams found before the question
PASSAGE_MIN_WORDS = 8  # shorter passages are no evidence of their own
LOST_EVIDENCE_SHARE = 0.25  # most of a question's specificity that word edits may remove

_OPEN = "[\"'\u201c\u2018(\\[]"
_MARK = r"(?:[-*\u2022>+]+|\(?[0-9a-zA-Z]{1,3}[.)]|[A-Za-z]{1,12}\s*:|[A-Za-z]{1,12}\.)"
# What may precede a unit on its line: nothing but a list marker or a label ("-", "3.", "b)",
# "Q:", "Question:") and opening quotes; or a label after the end of a sentence.
_LEAD_ALONE = re.compile(rf"\A\s*{_MARK}?\s*{_OPEN}*\s*\Z")
_LEAD_LABELLED = re.compile(rf"[.!?]\s+[A-Za-z]{{1,12}}\s*:\s*{_OPEN}*\s*\Z")
# What may follow it up to the end of its line: closing quotes and final punctuation.
_TAIL = re.compile(r"\A[\"'\u201d\u2019)\]]*\s*[.?!:;,]*\s*[\"'\u201d\u2019)\]]*\s*\Z")
_CLOSING_QUOTE = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


@dataclass(frozen=True)
class Alignment:
    """A question found in the document's words [start, end) with `edits` word edits, the
    evidence (summed word specificity) it carries, and the rule that reported it."""

    item: EvalItem
    start: int
    end: int
    edits: int
    content_words: int
    evidence: float = 0.0
    rule: str = ""
    match_kind: str = ""
    answer: tuple[int, int] | None = None  # word span [start, end)
    answer_side: str = ""
    passage: tuple[int, int] | None = None  # word span [start, end)


@lru_cache(maxsize=8)
def _word_pattern(punctuation_chars: str) -> re.Pattern[str]:
    return re.compile("[^\\s" + re.escape(punctuation_chars) + "]+")


def word_spans(text: str, punctuation_chars: str, n_words: int) -> list[tuple[int, int]]:
    """The character span in `text` of each normalised word (a normalised word is a maximal
    run of characters that are neither whitespace nor punctuation); empty when the count does
    not reproduce the document's `n_words` words."""
    spans = [m.span() for m in _word_pattern(punctuation_chars).finditer(text)]
    return spans if len(spans) == n_words else []


def is_unit(text: str, first: int, last: int) -> bool:
    """True when text[first:last] stands as a unit of its own in the original text: the whole
    of its line (after a list marker or a label), or a whole quoted string."""
    line_start = text.rfind("\n", 0, first) + 1
    line_end = text.find("\n", last)
    lead = text[line_start:first]
    tail = text[last : line_end if line_end >= 0 else len(text)]
    if (_LEAD_ALONE.match(lead) or _LEAD_LABELLED.search(lead)) and _TAIL.match(tail):
        return True
    closing = _CLOSING_QUOTE.get(text[first - 1]) if first > 0 else None
    return closing is not None and tail.lstrip(".?!,;:").startswith(closing)


def find_answer(
    item: EvalItem, words: list[str], start: int, end: int, window: int
) -> tuple[tuple[int, int], str] | None:
    """The item's answer within `window` words before or after [start, end), or inside it
    (fill-in-the-blank: more often than the question itself holds it): (span, side)."""
    answer = item.answer_words
    k = len(answer)
    if not k:
        return None
    if not any(w not in FUNCTION_WORDS and not w.isdigit() for w in answer):
        window = min(window, BARE_ANSWER_WINDOW)
    inside_ok = _count(answer, tuple(words[start:end])) > _count(answer, item.question_words)
    n = len(words)

    def side(a: int, b: int) -> str | None:
        if b <= start:
            return "before"
        if a >= end:
            return "after"
        return "inside" if inside_ok else None

    if k <= LONG_ANSWER_WORDS:
        lo, hi = max(0, start - window - k), min(n, end + window + k)
        first = answer[0]
        for s_ in range(lo, hi - k + 1):
            if words[s_] == first and tuple(words[s_ : s_ + k]) == answer:
                where = side(s_, s_ + k)
                if where:
                    return (s_, s_ + k), where
        return None
    found = _trigram_overlap(answer, words, max(0, start - window - 2 * k), start)
    found = found or _trigram_overlap(answer, words, end, min(n, end + window + 2 * k))
    if found is None:
        return None
    return found, "before" if found[1] <= start else "after"


def find_passage(
    item: EvalItem, words: list[str], start: int, window: int
) -> tuple[int, int] | None:
    """The item's passage just before its question (within its length + `window` words), as a
    word span, when at least half of its word 3-grams are there."""
    passage = item.passage_words
    if len(passage) < PASSAGE_MIN_WORDS:
        return None
    return _trigram_overlap(passage, words, max(0, start - len(passage) - window), start)


def _trigram_overlap(
    needle: tuple[str, ...], words: list[str], lo: int, hi: int
) -> tuple[int, int] | None:
    """The span of words[lo:hi] holding at least LONG_ANSWER_MIN_OVERLAP of `needle`'s
    distinct word 3-grams (first to last hit), or None."""
    grams = {needle[i : i + 3] for i in range(len(needle) - 2)}
    if not grams or hi - lo < 3:
        return None
    hits = [i for i in range(lo, hi - 2) if tuple(words[i : i + 3]) in grams]
    if len({tuple(words[i : i + 3]) for i in hits}) < LONG_ANSWER_MIN_OVERLAP * len(grams):
        return None
    return hits[0], hits[-1] + 3


def find_alignments(
    text: str, words: list[str], index: ReferenceIndex, candidates: dict[int, set[int]]
) -> list[Alignment]:
    """Questions found at their `candidates` (per item, the word positions where its question
    would start by one of its anchors: `anchor_candidates`, `candidates_at`), aligned with
    edits and judged by the rules: the best alignment per eval instance, without those a
    closer sibling explains. `text` is only read for the unit-of-its-own check."""
    o = index.options
    items = index.items
    spans: list[list[tuple[int, int]]] = []

    def unit(start: int, end: int) -> bool:
        if not spans:
            spans.append(word_spans(text, o.punctuation_chars, len(words)))
        found = spans[0]
        return bool(found) and is_unit(text, found[start][0], found[end - 1][1])

    judge = Judge(o, index.identity, words, unit)
    found: list[Alignment] = []
    n = len(words)
    present = set(words)
    for item_id in sorted(candidates):
        item = items[item_id]
        if item.question_key_words and present.isdisjoint(item.question_key_words):
            continue
        q = item.question_words
        e = item.question_edits
        best: Alignment | None = None
        covered_until = -1
        for p0 in sorted(candidates[item_id]):
            if p0 < covered_until:
                continue
            lo, hi = max(0, p0 - e), min(n, p0 + len(q) + e)
            got = align_question(q, words, lo, hi, e)
            if got is None:
                continue
            start, end, edits = got
            covered_until = end
            al = judge(item, start, end, edits)
            if al is not None and (best is None or _rank(al) < _rank(best)):
                best = al
        if best is not None:
            found.append(best)
    return one_per_instance(without_closer_siblings(found))


_RULE_RANK = {
    "question_answer_window": 0,
    "question_passage_window": 0,
    "question_only": 1,
    "short_sentence": 2,
}


def _rank(al: Alignment) -> tuple[int, int, float, int]:
    return (_RULE_RANK[al.rule], al.edits, -al.evidence, al.start)


def without_closer_siblings(found: list[Alignment]) -> list[Alignment]:
    """Drop an alignment with edits when another item's alignment covers most of its words
    with fewer edits: the words are that sibling's, and the edits were its distinguishing
    words ("sum of repeated elements" read into "product of non repeated elements")."""
    kept = []
    for al in found:
        if al.edits and any(
            other.edits < al.edits
            and other.item.question_words != al.item.question_words
            and 2 * (min(al.end, other.end) - max(al.start, other.start)) > al.end - al.start
            for other in found
        ):
            continue
        kept.append(al)
    return kept


def one_per_instance(found: list[Alignment]) -> list[Alignment]:
    """The best alignment per eval instance (a multiple-choice question is one instance with
    a record per choice: the record whose answer is there wins)."""
    best: dict[tuple, Alignment] = {}
    for al in found:
        key = al.item.instance
        if key not in best or _rank(al) < _rank(best[key]):
            best[key] = al
    return sorted(best.values(), key=lambda a: (a.start, a.item.item_id))


class Judge:
    """The rules, in order, for one document: a new `Alignment` with its rule and evidence,
    or None when the stretch does not show enough of the item."""

    def __init__(
        self,
        options: DetectOptions,
        identity: Identity | None,
        words: list[str],
        unit: Callable[[int, int], bool],
    ) -> None:
        self.o = options
        self.identity = identity
        self.words = words
        self.unit = unit

    def __call__(self, item: EvalItem, start: int, end: int, edits: int) -> Alignment | None:
        o, words = self.o, self.words
        content = {w for w in item.question_words if w not in FUNCTION_WORDS}
        stretch = set(words[start:end])
        present = content & stretch
        if not present:
            return None
        evidence = self.evidence(item, present)
        if edits and content - stretch:
            lost = self.evidence(item, content - stretch)
            if lost > LOST_EVIDENCE_SHARE * (evidence + lost):
                return None  # the edits removed what tells this item from its siblings
        found = Alignment(item, start, end, edits, len(present), evidence)
        answer = find_answer(item, words, start, end, o.answer_window_words)
        if answer is not None:
            span, side = answer
            return replace(
                found,
                rule="question_answer_window",
                match_kind="question_answer",
                answer=span,
                answer_side=side,
            )
        passage = find_passage(item, words, start, o.answer_window_words)
        if passage is not None:
            return replace(
                found,
                rule="question_passage_window",
                match_kind="question_passage",
                passage=passage,
            )
        if self.identity is not None and item.item_id in self.identity.templates:
            return None  # its words are shared by many instances: no evidence for this one
        if len(present) < o.min_content_words:
            return None
        long_enough = len(item.question_words) >= o.question_only_min_words
        if long_enough and len(present) >= 3 and evidence >= o.question_only_min_evidence:
            return replace(found, rule="question_only", match_kind="question")
        if (
            o.short_sentence_rule
            and evidence >= o.short_unit_min_evidence
            and self.unit(start, end)
        ):
            return replace(found, rule="short_sentence", match_kind="short_question")
        return None

    def evidence(self, item: EvalItem, words: set[str]) -> float:
        if self.identity is None:
            return float(len(words))
        return self.identity.evidence(item.eval_key, words)


def align_question(
    question: tuple[str, ...], words: list[str], lo: int, hi: int, max_edits: int
) -> tuple[int, int, int] | None:
    """Best (start, end, edits) of `question` in words[lo:hi] with at most `max_edits` word
    edits (semi-global Levenshtein: the whole question, any stretch of the document).

    Two exact shortcuts before the dynamic programme: a verbatim occurrence is the best
    alignment (the first one: the programme prefers the smallest end), and an alignment with
    at most `max_edits` edits matches all but `max_edits` question words to equal words of
    the stretch, so fewer question words present in it means none."""
    seg = words[lo:hi]
    m = len(seg)
    length = len(question)
    first = question[0] if question else None
    s = -1
    while True:
        try:
            s = seg.index(first, s + 1)
        except ValueError:
            break
        if s + length > m:
            break
        if tuple(seg[s : s + length]) == question:
            return lo + s, lo + s + length, 0
    present = set(seg)
    if sum(1 for w in question if w in present) < length - max_edits:
        return None
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
            if c < best:
                best = c
        if best > max_edits:
            return None
        prev, prev_start = cur, cur_start
    end = min(range(m + 1), key=lambda j: (prev[j], j))
    if prev[end] > max_edits:
        return None
    return lo + prev_start[end], lo + end, prev[end]


def _count(needle: tuple[str, ...], hay: tuple[str, ...]) -> int:
    k = len(needle)
    return sum(1 for i in range(len(hay) - k + 1) if hay[i : i + k] == needle)


def anchor_candidates(
    words: list[str], by_length: dict[int, dict[tuple[str, ...], list[tuple[int, int]]]]
) -> dict[int, set[int]]:
    """Per item, the word positions where its question would start by one of its anchors.

    Which anchors occur is one C-level set intersection per run length; only those that do
    are then located, by `list.index` on their longest word (rare, so few false starts).
    """
    candidates: dict[int, set[int]] = {}
    for k, table in by_length.items():
        hits = table.keys() & zip(*(words[j:] for j in range(k)), strict=False)
        if not hits:
            continue
        n = len(words)
        for run in hits:
            key = max(range(k), key=lambda j: len(run[j]))
            word = run[key]
            i = key - 1
            while True:
                try:
                    i = words.index(word, i + 1)
                except ValueError:
                    break
                start = i - key
                if start < 0 or start + k > n:
                    continue
                if k == 1 or tuple(words[start : start + k]) == run:
                    for item_id, offset in table[run]:
                        candidates.setdefault(item_id, set()).add(start - offset)
    return candidates


def candidates_at(
    words: list[str],
    places: list[tuple[int, tuple[str, ...]]],
    by_length: dict[int, dict[tuple[str, ...], list[tuple[int, int]]]],
) -> dict[int, set[int]]:
    """`anchor_candidates` from places where anchor runs can occur (word position, run):
    every occurrence among them, and any other is checked out."""
    candidates: dict[int, set[int]] = {}
    for start, run in places:
        k = len(run)
        if tuple(words[start : start + k]) == run:
            for item_id, offset in by_length[k][run]:
                candidates.setdefault(item_id, set()).add(start - offset)
    return candidates


def word_to_token_bpe(
    tok: BpeTokenizer, tokens: list[int], words: list[str]
) -> Callable[[int, bool], int]:
    starts = []
    pos = 0
    for t in tokens:
        starts.append(pos)
        pos += len(tok.decode_token(t))
    word_pos = []  # byte offset of the space before each word in " " + joined words
    p = 0
    for w in words:
        word_pos.append(p)
        p += 1 + len(w.encode("utf-8"))

    def to_token(i: int, last: bool) -> int:
        byte = word_pos[i] + (len(words[i].encode("utf-8")) if last else 0)
        return max(0, bisect.bisect_right(starts, byte) - 1)

    return to_token


def alignment_match(
    al: Alignment,
    to_token: Callable[[int, bool], int],
    length: int,
    render: Callable[[int, int], str],
) -> Match:
    """The match of an alignment in a document of `length` tokens; `to_token(word, last)` is
    the token position of a word's first (or last) token, `render(a, b)` the text of tokens
    [a, b)."""
    item = al.item
    words = len(item.question_words)
    similarity = 1.0 - al.edits / words
    reason = (
        f"question words {al.start}-{al.end - 1} aligned with {al.edits} of "
        f"{item.question_edits} allowed word edits ({words} words, {al.content_words} "
        "content words)"
    )
    reason += f", evidence {al.evidence:.2f}"
    if al.rule == "question_answer_window":
        reason += f"; answer {al.answer_side} the question"
    elif al.rule == "question_passage_window":
        reason += "; passage before the question"
    elif al.rule == "question_only":
        reason += "; long and specific enough to stand alone"
    else:
        reason += "; a line, list entry or quoted string of its own"
    answer = None
    if al.answer is not None:
        answer = (to_token(al.answer[0], False), to_token(al.answer[1] - 1, True))
    passage = None
    if al.passage is not None:
        passage = (to_token(al.passage[0], False), to_token(al.passage[1] - 1, True))
    start = to_token(al.start, False)
    end = to_token(al.end - 1, True)
    evidence = AlignmentEvidence(
        rule=al.rule,
        match_kind=al.match_kind,
        reason=reason,
        edit_similarity=similarity,
        matched_words=words - al.edits,
        min_edit_similarity=1.0 - item.question_edits / words,
        answer_span=answer,
        passage_span=passage,
    )
    first = start if passage is None else min(start, passage[0])
    last = end if answer is None else max(end, answer[1])
    text = overlap_text((start, end), (first, last), length, render)
    return Match(item, similarity, start, end, text, evidence)
