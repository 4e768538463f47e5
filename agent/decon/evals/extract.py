"""Dataset rows -> Decon eval records (pure: a row in, records out).

The rules are those of Decon's converter (`python/evals.py`), so a config gives the records
Decon gives: every `answers` item that yields a meaningful value makes its own record
(`expand_choices` and `expand_prefix` one per choice, with `is_correct`), a row whose items
yield nothing makes one record with the first item's value, `prompts: {array: ...}` makes one
record per question with `sub_index`, and a record with no question is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from decon.evals.spec import EvalSpec, extractor_of

Row = Mapping[str, Any]


def fingerprint(passage: str | None, question: str | None, answer: str | None) -> str:
    """Decon's fingerprint: the first 16 hex digits of sha256(passage + question + answer)."""
    content = f"{passage or ''}{question or ''}{answer or ''}"
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def get_path(row: Any, path: str | None) -> Any:
    """The value at a dotted path (`answer.text`, `choices.text.0`), or None when absent."""
    if not path:
        return None
    value = row
    for part in path.split("."):
        if part.isdigit():
            index = int(part)
            if not isinstance(value, list | tuple) or index >= len(value):
                return None
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def is_meaningful(value: Any) -> bool:
    """Not None, not a blank string, not a mapping of empty values."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):
        return any(value.values())
    return True


@dataclass(frozen=True)
class Expansion:
    """One record a row expands to: what it overrides of the entry's extraction."""

    answer: str | None = None
    answer_set: bool = False  # `answer` is the record's answer (even when None)
    question: str | None = None  # parallel arrays: this record's question
    sub_index: int | None = None
    is_correct: bool | None = None
    has_is_correct: bool = False


def _letter_index(key: Any) -> int | None:
    """'A' -> 0, 'b' -> 1 for a one-letter key, else int(key) (None when neither)."""
    if isinstance(key, str) and len(key) == 1 and key.isalpha():
        return ord(key.upper()) - ord("A")
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def _pick(values: Any, key: Any) -> Any:
    """`values[key]` for a letter or number key into a list (None when out of range)."""
    if not isinstance(values, list):
        return None
    i = _letter_index(key)
    return values[i] if i is not None and 0 <= i < len(values) else None


def _prefix_suffix(value: Any, transform: str | None) -> Any:
    """expand_prefix: the correct field's suffix from the label, after `label_transform`."""
    try:
        if transform == "numbers_to_letters":
            n = int(value)
            return chr(ord("A") + n - 1) if n >= 1 else value
        if transform == "add_one":
            return str(int(value) + 1)
        if transform == "index_to_letter":
            return chr(ord("a") + int(value))
        if transform == "binary_to_bool":
            return "true" if int(value) == 1 else "false"
    except (TypeError, ValueError, OverflowError):
        return value
    return value


def _choice(text: Any, is_correct: bool | None) -> Expansion:
    return Expansion(str(text), True, is_correct=is_correct, has_is_correct=True)


def _expand_choices(row: Row, cfg: dict) -> list[Expansion]:
    choices = get_path(row, cfg.get("field"))
    index_field = cfg.get("correct_index")
    correct = get_path(row, index_field) if index_field else None
    if isinstance(choices, dict) and "text" in choices:
        labels = choices.get("label") or []
        return [
            _choice(text, (labels[i] == correct if i < len(labels) else False) if correct else None)
            for i, text in enumerate(choices["text"] or ())
        ]
    if not isinstance(choices, list):
        return []
    out = []
    for i, text in enumerate(choices):
        is_correct = None
        if isinstance(correct, str) and len(correct) == 1 and correct.isalpha():
            is_correct = i == ord(correct.upper()) - ord("A")
        elif isinstance(correct, int):
            is_correct = i == correct
        out.append(_choice(text, is_correct))
    return out


def _expand_prefix(row: Row, cfg: dict) -> list[Expansion]:
    prefix = cfg["prefix"]
    fields = sorted(
        ((key, key[len(prefix) :]) for key in row if key.startswith(prefix) and key != prefix),
        key=lambda kv: kv[1],
    )
    correct = get_path(row, cfg["suffix_match_field"])
    if correct is not None:
        correct = _prefix_suffix(correct, cfg.get("label_transform"))
    out = []
    for key, suffix in fields:
        value = get_path(row, key)
        if value is not None:
            out.append(_choice(value, str(suffix) == str(correct) if correct is not None else None))
    return out


def _indexed(row: Row, cfg: dict) -> Any:
    key = get_path(row, cfg["key_field"])
    if key is None:
        return None
    if cfg.get("prefix"):
        label = key
        if cfg.get("label_transform") == "numbers_to_letters":
            try:
                n = int(key)
                label = chr(ord("A") + n - 1) if n >= 1 else "A"
            except (TypeError, ValueError, OverflowError):
                pass
        return get_path(row, f"{cfg['prefix']}{label}")
    return _pick(get_path(row, cfg.get("field")), key)


def _plain(path: str, row: Row) -> Expansion | None:
    value = get_path(row, path)
    if isinstance(value, dict) and "answer.date" in path:
        # DROP's dates: {"day": ..., "month": ..., "year": ...}, read as "month day year"
        parts = [str(value[k]) for k in ("month", "day", "year") if value.get(k)]
        return Expansion(" ".join(parts), True) if parts else None
    return Expansion(str(value), True) if is_meaningful(value) else None


def _item_expansions(row: Row, item: Any) -> list[Expansion]:
    """The records one `answers` item makes of a row."""
    if isinstance(item, str):
        got = _plain(item, row)
        return [got] if got else []
    kind = extractor_of(item)
    if kind == "expand_choices":
        return _expand_choices(row, item["expand_choices"])
    if kind == "expand_prefix":
        return _expand_prefix(row, item["expand_prefix"])
    if kind == "array":
        return []  # read with the questions (parallel arrays)
    if kind == "indexed":
        value = _indexed(row, item["indexed"])
    elif "key_field" in item:
        value = _pick(get_path(row, item["field"]), get_path(row, item["key_field"]))
    else:
        value = get_path(row, item["field"])
        if value is not None and item.get("transform") == "binary_to_bool":
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                value = "true" if int(value) == 1 else "false"
    return [Expansion(str(value), True)] if is_meaningful(value) else []


def _parallel(row: Row, spec: EvalSpec) -> list[Expansion] | None:
    """`prompts: {array: ...}`: one record per non-blank question (None: not this form, or
    no questions in this row)."""
    prompt = spec.prompt
    if not isinstance(prompt, dict) or "array" not in prompt:
        return None
    questions = get_path(row, prompt["array"])
    if not questions:
        return None
    answers = None
    for item in spec.answers or ():
        if isinstance(item, dict) and "array" in item:
            answers = get_path(row, item["array"])
            break
    if not isinstance(questions, list):
        questions = [questions]
    if answers and not isinstance(answers, list):
        answers = [answers]
    out = [
        Expansion(
            str(answers[i]) if answers and i < len(answers) else None,
            True,
            question=str(q),
            sub_index=i,
        )
        for i, q in enumerate(questions)
        if q and not (isinstance(q, str) and not q.strip())
    ]
    return out or [Expansion()]


def expansions(row: Row, spec: EvalSpec) -> list[Expansion]:
    """The records a row makes, before their questions are read."""
    got = _parallel(row, spec)
    if got is not None:
        return got
    out: list[Expansion] = []
    for item in spec.answers or ():
        out += _item_expansions(row, item)
    return out or [Expansion()]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def question_of(row: Row, spec: EvalSpec, exp: Expansion) -> str | None:
    """The record's question (prompt)."""
    prompt = spec.prompt
    if exp.question is not None:
        return exp.question
    if isinstance(prompt, str):
        return _text(get_path(row, prompt))
    if isinstance(prompt, list):
        # several fields: their values joined, as concat_messages joins messages
        parts = [str(v) for v in (get_path(row, p) for p in prompt) if v is not None]
        parts = [p for p in parts if p.strip()]
        return " ".join(parts) or None
    if isinstance(prompt, dict):
        if "concat_messages" in prompt:
            cfg = prompt["concat_messages"]
            messages = get_path(row, cfg.get("field", "messages"))
            if not messages or not isinstance(messages, list):
                return None
            content_field = cfg.get("content_field", "content")
            contents = [
                str(m[content_field])
                for m in messages
                if isinstance(m, dict) and m.get(content_field)
            ]
            text = " ".join(contents) or None
            extra = get_path(row, prompt.get("append_field"))
            if extra:
                text = f"{text} {extra}" if text else str(extra)
            return text
        if "field" in prompt:
            return _text(get_path(row, prompt["field"]))
    return None


def answer_of(row: Row, spec: EvalSpec, exp: Expansion) -> str | None:
    """The record's answer: the expansion's, else the first `answers` item's value."""
    if exp.answer_set:
        return exp.answer
    if not spec.answers:
        return None
    first = spec.answers[0]
    if isinstance(first, str):
        return _text(get_path(row, first))
    if not isinstance(first, dict) or "field" not in first:
        return None
    value = get_path(row, first["field"])
    if "key_field" in first and isinstance(value, list):
        key = get_path(row, first["key_field"])
        try:
            i = int(key) if isinstance(key, str) else key
            if key is not None and 0 <= i < len(value):
                return str(value[i])
        except (TypeError, ValueError):
            pass
    if isinstance(value, list) and value:
        return str(value[0])
    return _text(value)


def row_records(
    row: Row, spec: EvalSpec, split: str, index: int, doc_ids: Iterator[int]
) -> list[dict[str, Any]]:
    """Decon's eval records for row `index` of `split` (fields in Decon's order; `doc_ids`
    is advanced once per record)."""
    records = []
    passage = _text(get_path(row, spec.passage)) if isinstance(spec.passage, str) else None
    for exp in expansions(row, spec):
        question = question_of(row, spec, exp)
        if not question or not question.strip():
            continue
        answer = None if split in spec.no_answer_splits else answer_of(row, spec, exp)
        record: dict[str, Any] = {
            "eval_key": spec.name,
            "eval_instance_index": index,
            "split": split,
            "question": question,
            "passage": passage,
            "answer": answer,
            "config": spec.hf_config,
            "doc_id": next(doc_ids),
        }
        if exp.sub_index is not None:
            record["sub_index"] = exp.sub_index
        if exp.has_is_correct:
            record["is_correct"] = exp.is_correct
        if answer is None:
            del record["answer"]
        if passage is None:
            del record["passage"]
        record["fingerprint"] = fingerprint(passage, question, answer)
        records.append(record)
    return records
