"""Identity evidence: word specificity per eval, templates, and what the alignment rules do with
the hard negatives real references produce (template questions, short items, an edit on the
word that identifies an item, a multiple-choice item expanded into a record per choice)."""

from __future__ import annotations

import random
import re

from decon.detect.identity import build_identity, masked_question
from decon.detect.options import DetectOptions
from decon.detect.reference import build_index
from fakes.detect_one import detect_text

NAMES = ["Robin", "Kai", "Sasha", "Jordan", "Casey", "Riley", "Quinn", "Skylar", "Alex", "Remy"]
SUBJECTS = [
    "photosynthesis", "the treaty", "a glacier", "the enzyme", "the comet", "a volcano",
    "the parliament", "the bridge", "a tsunami", "the orchestra", "the reactor", "a satellite",
]  # fmt: skip
PROSE = "Yesterday we walked along the river and talked about many things. "


def records(eval_key: str, *items: dict) -> list[tuple[str, int, dict]]:
    return [
        ("ev.jsonl", i, {"eval_key": eval_key, "eval_instance_index": i, **it})
        for i, it in enumerate(items)
    ]


def mmlu_like() -> list[dict]:
    """Questions of one eval sharing the words "is also known as" and "which of the following"."""
    rng = random.Random(5)
    out = [{"question": "Stack is also known as", "answer": "LIFO memory"}]
    for subject in SUBJECTS:
        out.append({"question": f"In {subject}, which of the following is also known as the core?"})
        out.append({"question": f"Which of the following best describes {subject} over time?"})
    for _ in range(40):
        words = " ".join(rng.choice(SUBJECTS).split()[-1] + str(rng.randrange(99)) for _ in "abc")
        out.append({"question": f"Which of the following is true of {words}?"})
    return out


def test_masked_question_hides_names_and_numbers() -> None:
    a = masked_question("What will Robin want to do next?")
    assert a == masked_question("What will Kai want to do next?") == "what will N want to do next"
    assert masked_question("Tom has 12 apples. Ann has 3.") == "tom has 0 apples ann has 0"
    assert masked_question("Stack is also known as") != masked_question("Queue is also known as")


def _masked_word_by_word(question: str) -> str:
    """The masking rule stated one word at a time (the oracle for the one-pass form)."""
    out: list[str] = []
    last_end = 0
    for m in re.finditer(r"[^\W_]+(?:['\u2019][^\W_]+)*", question):
        word = m.group()
        gap = question[last_end : m.start()]
        if not word.isalpha() and re.search(r"\d", word):
            out.append(re.sub(r"\d+", "0", word.lower()))
        elif word[0].isupper() and out and not re.search(r"[.!?:;\n]\s*$", gap):
            out.append("N" if word != "I" else "i")
        else:
            out.append(word.lower())
        last_end = m.end()
    return " ".join(out)


def test_masked_question_equals_the_word_by_word_rule() -> None:
    rng = random.Random(11)
    alphabet = "aB cD.\n\t!?:;'\u2019_1 2\u00a0\u2028\u00c9\u0663x\u3000I "
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(20000)]
    texts += ["Then Kai said: Robin's 3rd answer?\n  Bob and I left. O\u2019Neil 4x4 went"]
    assert [masked_question(t) for t in texts] == [_masked_word_by_word(t) for t in texts]


def test_specificity_and_templates_count_instances_not_records() -> None:
    rows = []
    for i, name in enumerate(NAMES):
        words = tuple(f"what will {name.lower()} want to do next".split())
        key = hash(masked_question(f"What will {name} want to do next?"))
        for choice in range(3):  # one instance, a record per choice
            rows.append((3 * i + choice, "siqa", ("siqa", "test", i), words, key))
    rows.append((99, "siqa", ("siqa", "test", 99), ("why", "did", "robin", "do", "this"), 7))
    identity = build_identity(rows)
    assert identity.evals["siqa"].questions == len(NAMES) + 1
    assert identity.specificity("siqa", "want") < 0.1  # in 10 of 11 questions
    assert identity.specificity("siqa", "kai") > 0.6  # in one
    assert identity.specificity("siqa", "never") == 1.0
    assert identity.templates == frozenset(range(3 * len(NAMES)))

    two = build_identity([r for r in rows if r[2][2] < 2])
    assert two.templates == frozenset()  # two instances are not yet a template


def test_an_edit_on_the_identifying_word_is_no_match() -> None:
    idx = build_index(records("mmlu", *mmlu_like()), DetectOptions())
    doc = PROSE + "In Python 3, 2/3 is .66 rather than 0. This is also known as true division. "
    assert detect_text(doc + PROSE, idx)[0] == []
    # Even with its answer near, the edit took the one word that names the item.
    assert detect_text(PROSE + "Heap is also known as LIFO memory. " + PROSE, idx)[0] == []
    assert detect_text(PROSE + "Stack is also known as LIFO memory. " + PROSE, idx)[0] != []
    own_line = PROSE + "\nStack is also known as\n" + PROSE
    (m,) = detect_text(own_line, idx)[0]
    assert m.evidence.rule == "short_sentence" and m.item.question_text == "stack is also known as"


def test_a_template_question_needs_the_passage_of_its_item() -> None:
    passages = [
        f"{name} spent the whole afternoon building a {obj} in the yard with the neighbours."
        for name, obj in zip(NAMES, ["kite", "fence", "shed", "raft", "swing"] * 2, strict=True)
    ]
    items = [
        {"question": f"What will {name} want to do next?", "passage": passage, "answer": "rest"}
        for name, passage in zip(NAMES, passages, strict=False)
    ]
    idx = build_index(records("social_i_qa", *items), DetectOptions())
    unseen = "Robin made a snowman in the park after the first snow of the winter. "
    assert detect_text(PROSE + unseen + "What will Robin want to do next?\n" + PROSE, idx)[0] == []
    leaked = PROSE + passages[1] + "\nWhat will Kai want to do next?\n" + PROSE
    (m,) = detect_text(leaked, idx)[0]
    assert (m.item.eval_instance_index, m.evidence.rule) == (1, "question_passage_window")


def test_a_closer_sibling_explains_the_edited_words() -> None:
    stem = "Write a python function to find the"
    tail = " of sorted sensor readings from the weather station log."
    items = [
        {"question": f"{stem} sum of repeated elements in a given array{tail}"},
        {"question": f"{stem} product of non-repeated elements in a given array{tail}"},
        *({"question": f"{stem} {s} of {w} in a given list."} for s in SUBJECTS for w in NAMES[:3]),
    ]
    idx = build_index(records("mbpp", *items), DetectOptions())
    doc = PROSE + f"\n{stem} product of non-repeated elements in a given array{tail}\n" + PROSE
    found = detect_text(doc, idx)[0]
    assert [m.item.eval_instance_index for m in found] == [1]


def test_a_short_item_inside_a_sentence_is_no_match() -> None:
    items = [{"question": "Right after a storm"}, {"question": "What is your favorite color?"}]
    items += [
        {"question": f"What is the weight of {s} after a long day with {n}?"}
        for s in SUBJECTS
        for n in NAMES[:3]
    ]
    idx = build_index(records("obqa", *items), DetectOptions())
    play = "KING: I shall walk right after a storm, when the sea is calm again, and think of you."
    assert detect_text(PROSE + play + " " + PROSE, idx)[0] == []
    code = "The bridgekeeper asks what is your favorite color and the knight answers blue. "
    assert detect_text(PROSE + code + PROSE, idx)[0] == []
    quoted = PROSE + 'He typed answer = input("What is your favorite color?") and ran it. '
    assert [m.evidence.rule for m in detect_text(quoted, idx)[0]] == ["short_sentence"]
    own_line = PROSE + "\n- Right after a storm\n" + PROSE
    assert [m.evidence.rule for m in detect_text(own_line, idx)[0]] == ["short_sentence"]


def test_one_line_per_instance_of_an_expanded_multiple_choice_item() -> None:
    question = "Which gas do green plants take in from the air to make their food?"
    choices = ["carbon dioxide", "oxygen", "nitrogen", "helium"]
    items = [{"question": question, "answer": c, "eval_instance_index": 0} for c in choices]
    items += [{"question": f"Which part of {s} changes first?"} for s in SUBJECTS]
    recs = [
        ("ev.jsonl", i, {"eval_key": "arc", **{"eval_instance_index": i, **it}})
        for i, it in enumerate(items)
    ]
    idx = build_index(recs, DetectOptions())
    found = detect_text(PROSE + question + " Answer: carbon dioxide. " + PROSE, idx)[0]
    assert len(found) == 1
    assert found[0].item.eval_instance_index == 0 and found[0].item.answer_text == "carbon dioxide"
