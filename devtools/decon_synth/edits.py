"""Text edits applied to planted items: light (a few words, case, punctuation) and heavy
(paraphrase-like synonym swaps and clause reordering), plus the negatives' rewrites."""

from __future__ import annotations

import random
import re

# Small hand-written synonym table (both directions are added below).
_SYNONYM_PAIRS = (
    ("big", "large"), ("small", "little"), ("quick", "fast"), ("begin", "start"),
    ("end", "finish"), ("buy", "purchase"), ("help", "assist"), ("show", "display"),
    ("use", "employ"), ("make", "create"), ("get", "obtain"), ("give", "provide"),
    ("find", "locate"), ("need", "require"), ("want", "wish"), ("many", "numerous"),
    ("often", "frequently"), ("each", "every"), ("whole", "entire"), ("choose", "select"),
    ("answer", "reply"), ("ask", "inquire"), ("car", "automobile"), ("home", "house"),
    ("child", "kid"), ("children", "kids"), ("man", "gentleman"), ("woman", "lady"),
    ("happy", "glad"), ("sad", "unhappy"), ("hard", "difficult"), ("easy", "simple"),
    ("rich", "wealthy"), ("poor", "needy"), ("old", "aged"), ("new", "novel"),
    ("near", "close"), ("far", "distant"), ("shop", "store"), ("job", "occupation"),
    ("money", "cash"), ("road", "street"), ("test", "exam"), ("idea", "notion"),
    ("student", "pupil"), ("teacher", "instructor"), ("doctor", "physician"),
    ("story", "tale"), ("town", "village"), ("total", "sum"), ("amount", "quantity"),
    ("number", "count"), ("cost", "price"), ("week", "seven days"), ("return", "give back"),
    ("write", "compose"), ("function", "routine"), ("list", "sequence"), ("string", "text"),
    ("value", "quantity"), ("true", "correct"), ("false", "incorrect"), ("following", "next"),
    ("which", "what"), ("most", "mostly"), ("likely", "probably"), ("because", "since"),
    ("about", "regarding"), ("around", "roughly"), ("also", "too"), ("before", "prior to"),
    ("after", "following"), ("during", "throughout"), ("person", "individual"),
    ("people", "folks"), ("place", "location"), ("thing", "object"), ("way", "manner"),
    ("part", "portion"), ("important", "significant"), ("different", "distinct"),
    ("large", "huge"), ("increase", "raise"), ("decrease", "reduce"), ("build", "construct"),
    ("water", "liquid"), ("energy", "power"), ("plant", "vegetation"), ("animal", "creature"),
    ("called", "named"), ("known", "recognized"), ("cause", "trigger"), ("result", "outcome"),
    ("example", "instance"), ("problem", "issue"), ("question", "query"), ("day", "date"),
    ("year", "twelve months"), ("spend", "expend"), ("earn", "make"), ("sell", "vend"),
    ("eat", "consume"), ("walk", "stroll"), ("run", "sprint"), ("look", "glance"),
    ("see", "observe"), ("think", "believe"), ("say", "state"), ("tell", "inform"),
)  # fmt: skip
SYNONYMS: dict[str, str] = {}
for _a, _b in _SYNONYM_PAIRS:
    SYNONYMS.setdefault(_a, _b)
    SYNONYMS.setdefault(_b, _a)

_STOPWORD_TEXT = """
a an the and or but if then else of to in on at by for with from as is are was were be
been being this that these those it its he she they them his her their we our you your i me
my not no do does did done have has had so than too very can could will would shall should
may might must which who whom whose what when where why how all any some such only own same
other into over under about above below up down out off again further once here there both
each few more most nor just"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_TOKEN_RE = re.compile(r"(\s+)")
_WORD_RE = re.compile(r"^([^\w]*)([\w'’-]+)([^\w]*)$", re.UNICODE)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")


def _split(text: str) -> list[str]:
    """Alternating [token, whitespace, token, ...]; joining gives the text back."""
    return _TOKEN_RE.split(text)


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _word_slots(parts: list[str]) -> list[int]:
    return [i for i in range(0, len(parts), 2) if _WORD_RE.match(parts[i])]


def light_edit(text: str, rng: random.Random) -> tuple[str, int]:
    """A few word substitutions or deletions plus a case and a punctuation change.

    Returns the edited text and the number of word-level edits (case and punctuation changes
    are not counted: normalisation removes them).
    """
    parts = _split(text)
    slots = _word_slots(parts)
    n_edits = min(len(slots), 1 + len(slots) // 15, 4)
    for idx in rng.sample(slots, n_edits):
        m = _WORD_RE.match(parts[idx])
        assert m is not None
        pre, word, post = m.groups()
        lower = word.lower()
        if lower in SYNONYMS:
            parts[idx] = pre + _match_case(word, SYNONYMS[lower]) + post
        elif rng.random() < 0.5 and len(slots) > 3:
            parts[idx] = pre + post  # deletion (punctuation kept)
        else:
            parts[idx] = pre + _match_case(word, rng.choice(("really", "actually", "also"))) + post
    edited = "".join(parts)
    # Case change: lowercase the first letter or upper-case one word.
    edited = edited[:1].lower() + edited[1:] if edited[:1].isupper() else edited.capitalize()
    # Punctuation change: drop or add final punctuation, commas become semicolons.
    edited = edited.rstrip(".?!") if edited.rstrip()[-1:] in ".?!" else edited + "."
    edited = edited.replace(", ", "; ", 1)
    return edited, n_edits


def heavy_edit(text: str, rng: random.Random) -> tuple[str, int]:
    """Paraphrase-like edit: synonym swaps on most swappable words, dropped function words and
    two clauses swapped. Returns the text and the number of word-level edits."""
    parts = _split(text)
    edits = 0
    for idx in _word_slots(parts):
        m = _WORD_RE.match(parts[idx])
        assert m is not None
        pre, word, post = m.groups()
        lower = word.lower()
        if lower in SYNONYMS and rng.random() < 0.85:
            parts[idx] = pre + _match_case(word, SYNONYMS[lower]) + post
            edits += 1
        elif lower in ("the", "a", "an", "very", "really", "just") and rng.random() < 0.5:
            parts[idx] = pre + post
            edits += 1
    edited = re.sub(r"[ \t]{2,}", " ", "".join(parts))
    clauses = [c for c in re.split(r"(?<=[.?!,;:])\s+", edited) if c]
    if len(clauses) >= 2:
        i = rng.randrange(len(clauses) - 1)
        clauses[i], clauses[i + 1] = clauses[i + 1], clauses[i]
        edited = " ".join(clauses)
        edits += 1
    else:
        # One clause: move its second half to the front ("X Y" -> "Y, X").
        words = edited.split(" ")
        if len(words) >= 2:
            mid = len(words) // 2
            edited = " ".join(words[mid:]) + ", " + " ".join(words[:mid])
            edits += 1
    return edited, edits


def template_rewrite(text: str, rng: random.Random, vocabulary: list[str], share: float) -> str:
    """Same template, different item: content words replaced by words from `vocabulary`,
    numbers changed, stopwords and punctuation kept. `share` of stopwords is replaced too."""
    parts = _split(text)
    for idx in range(0, len(parts), 2):
        token = parts[idx]
        if _NUMBER_RE.search(token):
            parts[idx] = _NUMBER_RE.sub(lambda m: _other_number(m.group(0), rng), token)
            continue
        m = _WORD_RE.match(token)
        if not m:
            continue
        pre, word, post = m.groups()
        if word.lower() in STOPWORDS and rng.random() >= share:
            continue
        parts[idx] = pre + _match_case(word, rng.choice(vocabulary)) + post
    return "".join(parts)


def _other_number(number: str, rng: random.Random) -> str:
    digits = re.sub(r"\D", "", number)
    while True:
        new = str(rng.randint(10 ** (len(digits) - 1) if len(digits) > 1 else 0, 10 ** len(digits)))
        if new != digits:
            return new


_TOPIC_TEMPLATES = (
    "Notes on {a} often start from {b}.",
    "The {a} section is followed by remarks about {b}.",
    "Readers asked whether {a} matters here; the short reply concerns {b}.",
    "See also: {a}; compare with {b}.",
    "Our glossary lists {a} next to {b}.",
    "Earlier chapters treat {a}, while this one is about {b}.",
)


def topic_sentences(words: list[str], rng: random.Random) -> str:
    """Sentences that mention `words` (an item's content words) two at a time, never adjacent."""
    words = list(words)
    rng.shuffle(words)
    sentences = []
    for i in range(0, len(words) - 1, 2):
        sentences.append(rng.choice(_TOPIC_TEMPLATES).format(a=words[i], b=words[i + 1]))
    if len(words) % 2:
        sentences.append(f"A last word on {words[-1]}.")
    return " ".join(sentences)


def content_words(text: str) -> list[str]:
    """Distinct lowercase alphabetic non-stopwords of `text`, in order of appearance."""
    seen: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z]{3,}", text):
        lower = word.lower()
        if lower not in STOPWORDS:
            seen.setdefault(lower, None)
    return list(seen)
