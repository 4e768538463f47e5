"""A small job world on the moto server: input shards, a reference directory, a config."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
from pathlib import Path
from typing import Any

import zstandard

from decon.config import Config
from decon.eventlog import EventLog
from decon.jobrun.job import JobContext, run_job
from decon.jobrun.signals import StopRequest
from decon.node.notify import Notifier
from fakes.marker_detector import marker_factory

MARKER = "the quick brown benchmark fox"
IN_BUCKET = "corpus"
IN_PREFIX = "train/v1/"
OUT_BUCKET = "results"
EXTS = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.bz2", ".jsonl.xz", ".jsonl.zstd")


def compress(data: bytes, name: str) -> bytes:
    if name.endswith(".gz"):
        return gzip.compress(data)
    if name.endswith((".zst", ".zstd")):
        return zstandard.ZstdCompressor().compress(data)
    if name.endswith(".bz2"):
        return bz2.compress(data)
    if name.endswith(".xz"):
        return lzma.compress(data)
    return data


def shard_bytes(name: str, index: int, lines: int, contaminated: bool) -> bytes:
    out = io.BytesIO()
    for n in range(lines):
        text = f"document {n} of shard {index} with some ordinary words"
        if contaminated and n % 5 == 2:
            text += f" and then {MARKER} appears"
        out.write(json.dumps({"id": f"{index}-{n}", "text": text}).encode() + b"\n")
    return compress(out.getvalue(), name)


def shard_names(count: int) -> list[str]:
    """Names in a few folders, cycling through every supported ending."""
    return [f"part-{i % 3}/shard-{i:04d}{EXTS[i % len(EXTS)]}" for i in range(count)]


def put_shards(
    client: Any, count: int, lines: int = 20, contaminated_every: int = 3
) -> dict[str, bool]:
    """Upload `count` shards; returns rel name -> contaminated."""
    for bucket in (IN_BUCKET, OUT_BUCKET):
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
    truth = {}
    for i, rel in enumerate(shard_names(count)):
        contaminated = i % contaminated_every == 0
        body = shard_bytes(rel, i, lines + i, contaminated)
        client.put_object(Bucket=IN_BUCKET, Key=IN_PREFIX + rel, Body=body)
        truth[rel] = contaminated
    return truth


def reference_dir(root: Path) -> Path:
    ref = root / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    (ref / "markers.txt").write_text(MARKER + "\n")
    return ref


def job_sections(root: Path, **extra: dict) -> dict:
    """Config sections for make_config: input on moto, outputs on moto, fast retries."""
    run = {
        "retry_attempts": 4,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "heartbeat_seconds": 0.5,
        "download_concurrency": 2,
        "upload_concurrency": 2,
        "transfer_threads": 2,
    }
    run.update(extra.pop("run", {}))
    sections = {
        "input": {"uri": f"s3://{IN_BUCKET}/{IN_PREFIX}"},
        "output": {"uri": f"s3://{OUT_BUCKET}/out"},
        "reference": {"uri": str(reference_dir(root))},
        "run": run,
    }
    sections.update(extra)
    return sections


def keys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def run_inline(
    cfg: Config,
    stop: StopRequest | None = None,
    notifier: Notifier | None = None,
    imds_launch_index: Any = None,
) -> int:
    """`decon run` in this process with the marker detector."""
    sink = io.StringIO()
    ctx = JobContext(
        EventLog(cfg.node.log_file, sink),
        notifier or Notifier(enabled=False),
        stop or StopRequest(),
        detector_factory=marker_factory,
        imds_launch_index=imds_launch_index,
    )
    return run_job(cfg, ctx)


def done_names(client: Any, cfg: Config) -> set[str]:
    """Basenames that have a report or a .clean marker."""
    prefix = cfg.output_prefix("reports").removeprefix(f"s3://{OUT_BUCKET}/")
    out = set()
    for key in keys(client, OUT_BUCKET, prefix):
        rel = key[len(prefix) :]
        out.add(rel.removesuffix(".report.jsonl").removesuffix(".clean"))
    return out


def write_job_file(cfg: Config, path: Path) -> Path:
    """The config as a YAML job file (every key spelled out)."""
    import yaml

    from decon.config import config_to_dict

    data = config_to_dict(cfg)
    data["node"].pop("config_path")
    path.write_text(yaml.safe_dump(data))
    return path


def basename(rel: str) -> str:
    """SPEC section 6 `{basename}`, written out independently of decon's own implementation."""
    for ext in (".gz", ".zst", ".zstd", ".bz2", ".xz"):
        rel = rel.removesuffix(ext)
    return rel.removesuffix(".jsonl").removesuffix(".json")
