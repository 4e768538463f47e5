"""Datasets through the Hugging Face `datasets` library: the hub, or local files.

- `hf_path` (+ `hf_config`): `datasets.load_dataset`, which reads the local cache (`HF_HOME`)
  first and the hub when online; a token for gated sets comes from `HF_TOKEN` (or
  `huggingface-cli login`). `HF_HUB_OFFLINE=1` uses the cache only.
- `local_path` a file (.parquet, .json/.jsonl, .csv, optionally compressed): one split,
  `train`, as Decon reads a local file.
- `local_path` a directory: its files by split name, `{split}.jsonl`, `{split}.parquet` or the
  hub's `{split}-00000-of-00001.parquet`, under `{dir}/{hf_config}/` when that exists (the
  layout of a downloaded hub repository).

Every failure is one line naming the eval and the dataset (`SourceProblem`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decon.errors import UserError
from decon.evals.spec import EvalSpec, FieldUse

# file name ending -> `datasets` builder
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
_SHARD_RE = re.compile(r"^(.+)-\d{5}-of-\d{5}$")


class SourceProblem(Exception):
    """A dataset that cannot be loaded or does not fit its config entry (one line)."""


def _datasets() -> Any:
    """The `datasets` module, quiet (imported here: it takes seconds)."""
    try:
        import datasets
    except ImportError:
        raise UserError(
            "decon evals build needs the Hugging Face `datasets` library: "
            "pip install 'decon-agent[evals]'"
        ) from None
    from huggingface_hub.utils import logging as hub_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()  # no "Retrying in 8s" lines: the failure is one line
    return datasets


def data_format(path: Path) -> tuple[str, str] | None:
    """(builder, name without its data endings) of a data file, or None."""
    name = path.name
    for ext in COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    for ext, builder in BUILDERS.items():
        if name.endswith(ext):
            return builder, name[: -len(ext)]
    return None


def split_files(directory: Path) -> dict[str, tuple[str, list[str]]]:
    """split -> (builder, files) of the data files in a directory tree."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(directory.rglob("*")):
        fmt = data_format(path) if path.is_file() else None
        if fmt is None:
            continue
        builder, stem = fmt
        shard = _SHARD_RE.match(stem)
        split = shard[1] if shard else stem
        have = found.setdefault(split, (builder, []))
        if have[0] != builder:
            raise SourceProblem(f"{directory}: split {split!r} mixes {have[0]} and {builder} files")
        have[1].append(str(path))
    return found


def resolve_local(local_path: str, config_dir: Path | None) -> Path:
    """A local path as given (relative to the working directory), else relative to the
    config file's directory."""
    path = Path(local_path).expanduser()
    if not path.exists() and not path.is_absolute() and config_dir is not None:
        beside = config_dir / path
        if beside.exists():
            return beside
    return path


def load_splits(
    spec: EvalSpec, config_dir: Path | None, cache_dir: Path | None
) -> Mapping[str, Any]:
    """split name -> `datasets.Dataset` for an entry (every split of the dataset for the hub;
    the configured ones for a local directory)."""
    ds = _datasets()
    cache = str(cache_dir) if cache_dir is not None else None
    if isinstance(spec.local_path, dict):
        files = {}
        for split, names in spec.local_path.items():
            paths = [
                resolve_local(n, config_dir) for n in ([names] if isinstance(names, str) else names)
            ]
            fmts = {data_format(p) for p in paths}
            for p in paths:
                if not p.is_file():
                    raise SourceProblem(f"local_path.{split}: {p}: no such file")
                if data_format(p) is None:
                    raise SourceProblem(f"{p}: not a data file ({', '.join(BUILDERS)})")
            builders = {f[0] for f in fmts if f}
            if len(builders) > 1:
                raise SourceProblem(f"local_path.{split}: mixes {' and '.join(sorted(builders))}")
            files[str(split)] = (builders.pop(), [str(p) for p in paths])
        return _load_files(ds, spec, files, cache)
    if spec.local_path is not None:
        path = resolve_local(spec.local_path, config_dir)
        if path.is_file():
            fmt = data_format(path)
            if fmt is None:
                known = ", ".join(BUILDERS)
                raise SourceProblem(f"{path}: not a data file ({known}, optionally compressed)")
            files = {"train": (fmt[0], [str(path)])}
        elif path.is_dir():
            root = path
            if spec.hf_config and (path / spec.hf_config).is_dir():
                root = path / spec.hf_config
            files = split_files(root)
            if not files:
                raise SourceProblem(f"{root}: no data files ({', '.join(BUILDERS)})")
        else:
            raise SourceProblem(f"local_path {spec.local_path}: no such file or directory")
        return _load_files(ds, spec, files, cache)
    try:
        if spec.hf_config is not None:
            return ds.load_dataset(spec.hf_path, spec.hf_config, cache_dir=cache)
        return ds.load_dataset(spec.hf_path, cache_dir=cache)
    except Exception as exc:  # noqa: BLE001 (the library's many error types)
        raise SourceProblem(hub_problem(spec, exc)) from None


def _load_files(
    ds: Any, spec: EvalSpec, files: dict[str, tuple[str, list[str]]], cache: str | None
) -> dict[str, Any]:
    """The configured splits of local files (the others: present, not read)."""
    out: dict[str, Any] = {}
    for split, (builder, names) in files.items():
        if split not in spec.splits:
            out[split] = None
            continue
        try:
            out[split] = ds.load_dataset(
                builder, data_files={split: names}, split=split, cache_dir=cache
            )
        except Exception as exc:  # noqa: BLE001 (the library's many error types)
            raise SourceProblem(f"{names[0]}: cannot read: {_detail(exc)}") from None
    return out


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def hub_problem(spec: EvalSpec, exc: BaseException) -> str:
    """Why the hub dataset could not be had, in one line with what to do."""
    names = {type(e).__name__ for e in _chain(exc)}
    text = _detail(exc)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if "OfflineModeIsEnabled" in text or ("ConnectionError" in names and offline):
        return (
            f"{spec.source}: not in the Hugging Face cache and the hub is offline "
            "(HF_HUB_OFFLINE=1): build it once online with the same HF_HOME, or use local_path"
        )
    if isinstance(exc, ConnectionError) or names & {"ConnectError", "ConnectTimeout"}:
        return (
            f"{spec.source}: cannot reach the Hugging Face hub ({text}): build online, or set "
            "HF_HUB_OFFLINE=1 to use the cache (HF_HOME), or use local_path"
        )
    if "DatasetNotFoundError" in names or "GatedRepoError" in names:
        return (
            f"{spec.source}: not found on the hub, or gated: accept its terms on the hub and "
            f"set HF_TOKEN ({text})"
        )
    return f"{spec.source}: cannot load: {text}"


def _feature_problem(features: Mapping[str, Any], use: FieldUse) -> str | None:
    """Why `use.path` cannot be found in rows of these features (None: it can, or the
    features cannot tell)."""
    if use.prefix:
        if any(name.startswith(use.path) and name != use.path for name in features):
            return None
        return f"no column starts with {use.path!r}"
    node: Any = features
    for part in use.path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return f"no field {part!r}" + (
                    f" (has: {', '.join(list(node)[:12])})" if node is not features else ""
                )
            node = node[part]
        elif hasattr(node, "feature"):  # a list: only an index goes into it
            if not part.isdigit():
                return f"{part!r} is inside a list (use an index, e.g. .0)"
            node = node.feature
        else:
            return f"{part!r} is inside a value of type {getattr(node, 'dtype', node)}"
    return None


def check_fields(spec: EvalSpec, split: str, dataset: Any) -> tuple[list[str], list[str]]:
    """(problems, warnings): every field the entry reads, against the split's columns."""
    problems, warnings = [], []
    features = dataset.features
    for use in spec.fields():
        why = _feature_problem(features, use)
        if why is None:
            continue
        columns = ", ".join(list(features)[:16])
        line = (
            f"{spec.name}: {use.role}: field {use.path!r} not in split {split!r} of "
            f"{spec.source}: {why} (columns: {columns})"
        )
        (problems if use.required else warnings).append(line)
    return problems, warnings
