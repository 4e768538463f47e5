"""Decon's evals config (`config/evals.yaml`), read as it is and checked once.

Each entry under `evals:` names a dataset (`hf_path` + optional `hf_config`, or `local_path`),
its `splits`, where the question is (`prompt`, or `prompts: {array: ...}`), an optional
`passage` field and the `answers` extractors. Problems are collected, one line each naming
the eval and the field, so a config with several mistakes is fixed in one round.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from decon.errors import UserError

ENTRY_KEYS = frozenset(
    {
        "hf_path",
        "local_path",
        "hf_config",
        "splits",
        "prompt",
        "prompts",
        "passage",
        "answers",
        "answer",
        "no_answer_splits",
        "extra_fields",
        "dataset_name_field",
    }
)
EXTRACTORS = ("expand_choices", "expand_prefix", "indexed", "array", "field")
# label_transform values each extractor understands (Decon's names)
PREFIX_TRANSFORMS = frozenset(
    {"numbers_to_letters", "add_one", "index_to_letter", "binary_to_bool"}
)
INDEXED_TRANSFORMS = frozenset({"numbers_to_letters"})
FIELD_TRANSFORMS = frozenset({"binary_to_bool"})
# Decon's `local_path: bundled_evals/<prefix>`: copy Decon's pre-built files with that prefix
BUNDLED_PREFIX = "bundled_evals/"


@dataclass(frozen=True)
class FieldUse:
    """A dotted path the config reads from each row, and what it is for (for messages)."""

    path: str
    role: str  # e.g. "prompt", "answers[0].expand_choices.field"
    required: bool = True  # False: extra_fields and dataset_name_field only warn
    prefix: bool = False  # True: `path` is a column-name prefix (expand_prefix, indexed)


@dataclass(frozen=True)
class EvalSpec:
    """One checked entry of the config."""

    name: str
    hf_path: str | None
    local_path: str | dict[str, str | list[str]] | None  # a mapping: split -> file(s)
    hf_config: str | None
    splits: tuple[str, ...]
    prompt: Any  # str | list[str] | dict (field / concat_messages / array) | None
    passage: Any  # a field path; a mapping is accepted and ignored, as Decon's converter does
    answers: list[Any] | None  # each a dotted path or one extractor mapping
    no_answer_splits: frozenset[str]
    extra_fields: tuple[str, ...]
    dataset_name_field: str | None

    @property
    def source(self) -> str:
        """The dataset as the user wrote it (for messages)."""
        if isinstance(self.local_path, dict):
            return "local_path {" + ", ".join(map(str, self.local_path)) + "}"
        if self.local_path is not None:
            return self.local_path
        return f"{self.hf_path}" + (f" ({self.hf_config})" if self.hf_config else "")

    @property
    def bundled_prefix(self) -> str | None:
        """`agi_eval_` for `local_path: bundled_evals/agi_eval_` (Decon's pre-built files)."""
        lp = self.local_path
        if isinstance(lp, str) and lp.startswith(BUNDLED_PREFIX) and lp.endswith("_"):
            return lp.split("/")[-1]
        return None

    def fields(self) -> Iterator[FieldUse]:
        """Every row field the entry reads."""
        yield from _prompt_fields(self.prompt)
        if isinstance(self.passage, str):
            yield FieldUse(self.passage, "passage")
        for i, item in enumerate(self.answers or ()):
            yield from _answer_fields(item, f"answers[{i}]")
        for name in self.extra_fields:
            yield FieldUse(name, "extra_fields", required=False)
        if self.dataset_name_field:
            yield FieldUse(self.dataset_name_field, "dataset_name_field", required=False)


def _prompt_fields(prompt: Any) -> Iterator[FieldUse]:
    if isinstance(prompt, str):
        yield FieldUse(prompt, "prompt")
    elif isinstance(prompt, list):
        for i, p in enumerate(prompt):
            yield FieldUse(p, f"prompt[{i}]")
    elif isinstance(prompt, dict):
        if "array" in prompt:
            yield FieldUse(prompt["array"], "prompts.array")
        elif "concat_messages" in prompt:
            cm = prompt["concat_messages"] or {}
            yield FieldUse(cm.get("field", "messages"), "prompt.concat_messages.field")
            if prompt.get("append_field"):
                yield FieldUse(prompt["append_field"], "prompt.append_field")
        elif "field" in prompt:
            yield FieldUse(prompt["field"], "prompt.field")


def _answer_fields(item: Any, role: str) -> Iterator[FieldUse]:
    if isinstance(item, str):
        yield FieldUse(item, role)
        return
    kind = extractor_of(item)
    cfg = item[kind] if kind != "field" else item
    if kind == "array":
        yield FieldUse(cfg, f"{role}.array")
        return
    for key in ("field", "key_field", "correct_index", "suffix_match_field"):
        if isinstance(cfg.get(key), str):
            yield FieldUse(cfg[key], f"{role}.{kind}.{key}" if kind != "field" else f"{role}.{key}")
    if isinstance(cfg.get("prefix"), str):
        yield FieldUse(cfg["prefix"], f"{role}.{kind}.prefix", prefix=True)


def extractor_of(item: dict) -> str:
    """Which extractor an answers item is (the first key Decon's converter would act on)."""
    if "field" in item and "transform" in item and "key_field" not in item:
        return "field"
    for kind in EXTRACTORS:
        if kind in item:
            return kind
    return ""


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_answer(name: str, i: int, item: Any) -> Iterator[str]:
    where = f"{name}: answers[{i}]"
    if isinstance(item, str):
        if not item:
            yield f"{where}: empty field path"
        return
    if not isinstance(item, dict) or not item:
        yield f"{where}: expected a field path or an extractor mapping, got {item!r}"
        return
    kind = extractor_of(item)
    if not kind:
        known = ", ".join(EXTRACTORS)
        yield f"{where}: unknown extractor {', '.join(map(repr, item))} (known: {known})"
        return
    if kind == "array":
        if not isinstance(item["array"], str):
            yield f"{where}.array: expected a field path"
        return
    cfg = item if kind == "field" else item[kind]
    if not isinstance(cfg, dict):
        yield f"{where}.{kind}: expected a mapping, got {cfg!r}"
        return
    allowed = {
        "expand_choices": ({"field"}, {"correct_index"}, frozenset()),
        "expand_prefix": (
            {"prefix", "suffix_match_field"},
            {"label_transform"},
            PREFIX_TRANSFORMS,
        ),
        "indexed": ({"key_field"}, {"field", "prefix", "label_transform"}, INDEXED_TRANSFORMS),
        "field": ({"field"}, {"key_field", "transform"}, FIELD_TRANSFORMS),
    }[kind]
    required, optional, transforms = allowed
    label = where if kind == "field" else f"{where}.{kind}"
    for key in sorted(set(cfg) - required - optional):
        yield f"{label}.{key}: unknown key (known: {', '.join(sorted(required | optional))})"
    for key in sorted(required):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            yield f"{label}.{key}: missing (a field name is required)"
    for key in sorted(optional - {"label_transform", "transform"}):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            yield f"{label}.{key}: expected a field name, got {cfg[key]!r}"
    if kind == "indexed" and not (cfg.get("field") or cfg.get("prefix")):
        yield f"{label}: needs `field` (an array) or `prefix` (field name prefix)"
    for key in ("label_transform", "transform"):
        value = cfg.get(key)
        if value is not None and value not in transforms:
            known = ", ".join(sorted(transforms)) or "none"
            yield f"{label}.{key}: unknown transform {value!r} (known here: {known})"


def _check_prompt(name: str, prompt: Any, key: str) -> Iterator[str]:
    if isinstance(prompt, str):
        if not prompt:
            yield f"{name}: {key}: empty field path"
    elif isinstance(prompt, list):
        if not prompt or not _is_str_list(prompt):
            yield f"{name}: {key}: expected a list of field paths"
    elif isinstance(prompt, dict):
        kinds = [k for k in ("array", "concat_messages", "field") if k in prompt]
        if not kinds:
            yield f"{name}: {key}: unknown form {', '.join(map(repr, prompt))} (known: a field "
            "path, a list of them, array, concat_messages, field)"
        elif kinds[0] == "array" and not isinstance(prompt["array"], str):
            yield f"{name}: {key}.array: expected a field path"
        elif kinds[0] == "concat_messages" and not isinstance(prompt["concat_messages"], dict):
            yield f"{name}: {key}.concat_messages: expected a mapping (field, content_field)"
    else:
        yield f"{name}: {key}: expected a field path, got {prompt!r}"


def check_entry(name: str, entry: Any) -> tuple[EvalSpec | None, list[str]]:
    """The spec of one config entry, or None and the problems (one line each)."""
    if not isinstance(entry, dict):
        return None, [f"{name}: expected a mapping, got {entry!r}"]
    problems = [
        f"{name}.{key}: unknown key (known: {', '.join(sorted(ENTRY_KEYS))})"
        for key in entry
        if key not in ENTRY_KEYS
    ]
    hf_path, local_path = entry.get("hf_path"), entry.get("local_path")
    if (hf_path is None) == (local_path is None):
        problems.append(f"{name}: needs exactly one of hf_path and local_path")
    for key in ("hf_path", "hf_config", "dataset_name_field"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            problems.append(f"{name}.{key}: expected a string, got {entry[key]!r}")
    if isinstance(local_path, dict):
        # our addition: split -> file (or list of files), for files not named by split
        for split, files in local_path.items():
            if not isinstance(files, str) and not (_is_str_list(files) and files):
                problems.append(f"{name}.local_path.{split}: expected a file path or a list")
    elif local_path is not None and not isinstance(local_path, str):
        problems.append(f"{name}.local_path: expected a path, got {local_path!r}")
    splits = entry.get("splits")
    if not _is_str_list(splits) or not splits:
        problems.append(f"{name}.splits: expected a list of split names")
        splits = []
    for key in ("no_answer_splits", "extra_fields"):
        if entry.get(key) is not None and not _is_str_list(entry[key]):
            problems.append(f"{name}.{key}: expected a list of names")
    prompt_key = "prompt" if "prompt" in entry else "prompts"
    prompt = entry.get(prompt_key)
    bundled = isinstance(local_path, str) and local_path.startswith(BUNDLED_PREFIX)
    if prompt is None and not bundled:
        problems.append(f"{name}: prompt: missing (the field holding the question)")
    elif prompt is not None:
        problems += _check_prompt(name, prompt, prompt_key)
    passage = entry.get("passage")
    if passage is not None and not isinstance(passage, str | dict):
        problems.append(f"{name}.passage: expected a field path, got {passage!r}")
    answers = entry.get("answers", entry.get("answer"))
    if answers is not None and not isinstance(answers, list):
        answers = [answers]
    for i, item in enumerate(answers or ()):
        problems += _check_answer(name, i, item)
    if problems:
        return None, problems
    spec = EvalSpec(
        name=name,
        hf_path=hf_path,
        local_path=local_path,
        hf_config=entry.get("hf_config"),
        splits=tuple(splits),
        prompt=prompt,
        passage=passage,
        answers=answers,
        no_answer_splits=frozenset(entry.get("no_answer_splits") or ()),
        extra_fields=tuple(entry.get("extra_fields") or ()),
        dataset_name_field=entry.get("dataset_name_field"),
    )
    return spec, []


class ConfigProblems(UserError):
    """Several problems, one line each (the command prints them all)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_evals_config(path: Path, names: list[str] | None = None) -> list[EvalSpec]:
    """The checked entries of an evals config, in file order (only `names`, when given)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    evals = data.get("evals") if isinstance(data, dict) else None
    if not isinstance(evals, dict) or not evals:
        raise UserError(f"{path}: expected a mapping `evals:` of eval name -> dataset entry")
    wanted = names if names else list(evals)
    unknown = [n for n in wanted if n not in evals]
    if unknown:
        raise UserError(
            f"{path}: no eval named {', '.join(map(repr, unknown))} (the config has "
            f"{len(evals)}: {', '.join(list(evals)[:8])}{', ...' if len(evals) > 8 else ''})"
        )
    specs, problems = [], []
    for name in wanted:
        spec, found = check_entry(str(name), evals[name])
        problems += [f"{path}: {p}" for p in found]
        if spec is not None:
            specs.append(spec)
    if problems:
        raise ConfigProblems(problems)
    return specs
