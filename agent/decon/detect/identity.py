"""Identity evidence for the word-alignment rules: how much a stretch of text says about which
eval item it is (pure: eval questions in, per-eval word statistics out).

A word's specificity within its eval is its IDF over the eval's distinct questions, scaled to
[0, 1]: 1 for a word in one question only (or in none), 0 for a word in every question. A
template's words ("which one of the following", "what will", "write a python function to find
the") carry almost none, so evidence is the specificity summed over matched words, not a count.

A question whose masked form (numbers and names replaced) is shared by several instances of
its eval is a template: its words cannot tell those instances apart, so it identifies an item
only together with that item's answer or passage.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

# Masked questions shared by at least this many instances of an eval are templates.
TEMPLATE_MIN_INSTANCES = 3

_NUMBER = re.compile(r"\d+")
# Each word with the gap before it; a capitalised word after another word of the same sentence
# is a name (not a sentence start).
_GAP_AND_WORD = re.compile(r"([\W_]*)([^\W_]+(?:['\u2019][^\W_]+)*)")
_SENTENCE_ENDS = ".!?:;"


def masked_question(question: str) -> str:
    """The question with numbers as "0" and names as "N", lowercased, punctuation dropped: equal
    for items made from one template ("What will Robin want to do next?" and "What will Kai
    want to do next?" both give "what will N want to do next")."""
    out: list[str] = []
    for gap, word in _GAP_AND_WORD.findall(question):
        # (letters are never digits: only other words can hold a number)
        if not word.isalpha() and _NUMBER.search(word):
            out.append(_NUMBER.sub("0", word.lower()))
        elif word[0].isupper() and out and not _ends_sentence(gap):
            out.append("N" if word != "I" else "i")
        else:
            out.append(word.lower())
    return " ".join(out)


def _ends_sentence(gap: str) -> bool:
    """The gap between two words holds a sentence end: one of ".!?:;" or a newline, followed
    by whitespace only."""
    text = gap.rstrip()
    return (bool(text) and text[-1] in _SENTENCE_ENDS) or "\n" in gap[len(text) :]


def template_key(question: str) -> int:
    """A stable 32-bit key of `masked_question` (crc32: the same in every process)."""
    return zlib.crc32(masked_question(question).encode("utf-8", "surrogatepass"))


@dataclass
class EvalWords:
    """Word document frequencies over the distinct questions of one eval."""

    questions: int = 0
    df: dict[str, int] = field(default_factory=dict)

    def specificity(self, word: str) -> float:
        """IDF of `word` over this eval's questions, scaled to [0, 1] (unknown words: 1)."""
        n = self.questions
        return math.log((n + 1) / (self.df.get(word, 0) + 1)) / math.log(n + 1) if n else 1.0


@dataclass
class Identity:
    """Per-eval word statistics and the set of template items."""

    evals: dict[str, EvalWords]
    templates: frozenset[int]  # item ids whose question is a template within its eval

    def specificity(self, eval_key: str, word: str) -> float:
        words = self.evals.get(eval_key)
        return words.specificity(word) if words is not None else 1.0

    def evidence(self, eval_key: str, words: Iterable[str]) -> float:
        """Summed specificity of the distinct `words` (pass content words only)."""
        stats = self.evals.get(eval_key)
        if stats is None:
            return float(len(set(words)))
        return sum(stats.specificity(w) for w in set(words))


def build_identity(
    items: Iterable[tuple[int, str, tuple, tuple[str, ...], int]],
) -> Identity:
    """From (item id, eval key, instance key, question words, template key) per item. Items of
    one instance (a multiple-choice question expanded into one record per choice) count once."""
    evals: dict[str, EvalWords] = {}
    seen_questions: set[tuple[str, tuple[str, ...]]] = set()
    instances: dict[tuple[str, int], set[tuple]] = {}
    by_template: dict[tuple[str, int], list[int]] = {}
    for item_id, eval_key, instance, words, key in items:
        stats = evals.setdefault(eval_key, EvalWords())
        if (eval_key, words) not in seen_questions:
            seen_questions.add((eval_key, words))
            stats.questions += 1
            for w in set(words):
                stats.df[w] = stats.df.get(w, 0) + 1
        instances.setdefault((eval_key, key), set()).add(instance)
        by_template.setdefault((eval_key, key), []).append(item_id)
    templates = frozenset(
        item_id
        for group, ids in by_template.items()
        if len(instances[group]) >= TEMPLATE_MIN_INSTANCES
        for item_id in ids
    )
    return Identity(evals=evals, templates=templates)
