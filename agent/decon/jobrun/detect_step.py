"""The detection step of the job, injected: a factory builds a `Detector` once (loading the
reference data once), and the pipeline calls it per file.

The built-in factory wraps `decon.detect.pipeline.process_file`. `decon run --detector
module:function` names another factory (same signature), e.g. a test double.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from decon.config import Config
from decon.errors import UserError

if TYPE_CHECKING:
    from decon.detect.options import DetectOptions
    from decon.detect.reference import ReferenceIndex


class DetectResult(Protocol):
    """What the pipeline reads of a detection result (`decon.detect.pipeline.FileResult`)."""

    lines: int
    bytes: int
    matches: int
    contaminated_lines: int
    malformed: int
    cancelled: bool
    # optional: `error` (why the file failed; no outputs then) and `counts()` (line counts)


class Detector(Protocol):
    """Detect one local file. Writes `report_path` only when the file is contaminated and
    `cleaned_path` (when given) with the kept lines; outputs appear complete or not at all.
    Returns early with `cancelled=True` when `cancel()` turns true."""

    def __call__(
        self,
        src: Path,
        rel_name: str,
        report_path: Path,
        cleaned_path: Path | None,
        cancel: Callable[[], bool] | None = None,
    ) -> DetectResult: ...


# (config, local reference directory) -> detector
DetectorFactory = Callable[[Config, Path], Detector]


def builtin_detector(cfg: Config, reference_dir: Path) -> Detector:
    """Decon's detection (`cfg.detect`) against the eval records under `reference_dir`."""
    from decon.detect.detector import load_detector
    from decon.detect.pipeline import WorkerPool, process_file, resolve_workers

    options = cfg.detect
    if options.mode == "toxic" and options.toxic_vectors.startswith("s3://"):
        local = fetch_vectors(cfg, options.toxic_vectors)
        options = dataclasses.replace(options, toxic_vectors=str(local))
    if options.mode == "simple" and cfg.output.uri.startswith("s3://"):
        from decon.detect.simple import SimpleDetector

        detector = SimpleDetector(shared_index(cfg, reference_dir, options))
    else:
        detector = load_detector(reference_dir, options)
    workers = resolve_workers(options.workers)
    # One pool for the whole job, forked now (before the pipeline's I/O threads exist) rather
    # than once per file; it is stopped when the detector is dropped or at exit.
    pool = WorkerPool(detector, workers) if workers > 1 else None

    def detect(
        src: Path,
        rel_name: str,
        report_path: Path,
        cleaned_path: Path | None,
        cancel: Callable[[], bool] | None = None,
    ) -> DetectResult:
        return process_file(
            src, rel_name, detector, options, report_path, cleaned_path, cancel, pool
        )

    if pool is not None:
        weakref.finalize(detect, pool.close)
    return detect


def index_prefix(cfg: Config) -> str:
    """Where the job's built reference index lives: `{output.uri}/{job.id}/index/`."""
    return f"{cfg.output.uri.rstrip('/')}/{cfg.job.id}/index/"


def shared_index(cfg: Config, reference_dir: Path, options: DetectOptions) -> ReferenceIndex:
    """The job's reference index, built once per job: the first node that needs it builds it
    and uploads it with a conditional write (one upload wins); every other node downloads it.
    A node keeps its copy in `{work_dir}/index`, mapped by all its workers. The file's name
    holds the digests of the reference's content and of the options that shape the index, so
    a job with another reference or other options never picks it up."""
    from decon.detect.indexfile import index_name, open_index, reference_digest, write_index
    from decon.detect.reference import load_index
    from decon.eventlog import EventLog
    from decon.storage import open_storage

    log = EventLog(cfg.node.log_file)
    digest = reference_digest(reference_dir)
    name = index_name(digest, options)
    local = cfg.work_dir() / "index" / name
    storage = open_storage(index_prefix(cfg), cfg.aws)
    if not local.is_file():
        if storage.exists(name):
            storage.get_file(name, local)
            log.event("INDEX_REUSED", uri=storage.uri(name), bytes=local.stat().st_size)
        else:
            t0 = time.perf_counter()
            write_index(load_index(reference_dir, options), local, digest)
            log.event("INDEX_BUILT", seconds=f"{time.perf_counter() - t0:.1f}", file=local)
            won = storage.put_file_if_absent(name, local)
            log.event("INDEX_UPLOADED" if won else "INDEX_UPLOAD_LOST", uri=storage.uri(name))
    return open_index(local, options, digest)


def vectors_dir(cfg: Config) -> Path:
    """Where S3 word-vector files are kept: `{work_dir}/vectors`."""
    return cfg.work_dir() / "vectors"


def fetch_vectors(cfg: Config, uri: str) -> Path:
    """Download the toxic mode's word-vector file `uri` (s3://bucket/key) once; a file of the
    same size already there (an earlier attempt of the job) is reused."""
    from decon.storage import open_storage, split_s3_uri

    _, key = split_s3_uri(uri)
    _, _, name = key.rpartition("/")
    if not name:
        raise UserError(f"detect.toxic_vectors: {uri}: names a prefix, not a .vec file")
    bucket_uri = uri[: len(uri) - len(name)]
    storage = open_storage(bucket_uri, cfg.aws)
    listed = [o for o in storage.list(name) if o.key == name]
    if not listed:
        raise UserError(f"detect.toxic_vectors: {uri}: no such object")
    dest = vectors_dir(cfg) / name
    if not (dest.is_file() and dest.stat().st_size == listed[0].size):
        storage.get_file(name, dest)
    return dest


def load_factory(spec: str | None) -> DetectorFactory:
    """`module:function` -> that factory; None -> the built-in one."""
    if not spec:
        return builtin_detector
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--detector: expected module:function, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--detector {spec}: cannot load: {exc}") from None
    return factory
