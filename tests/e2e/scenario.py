"""The job the scenarios run: a small planted corpus in the moto S3, a config whose node reaches
S3 at the harness's guest address and pip-installs from the wheelhouse, and ways to watch it."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    ARTIFACTS,
    S3_URL_IN_GUEST,
    WHEELHOUSE_IP,
    WHEELHOUSE_URL_IN_GUEST,
    HarnessError,
    Vm,
)

from decon.config import Config, config_from_dict
from decon.synth.plant import CorpusSpec, make_corpus

BUCKET = "decon-e2e"
JOB_ID = "e2e-job"
INPUT_PREFIX = "input/"
REFERENCE_PREFIX = "reference/"


def put_job_inputs(client: Any, workdir: Path, files: int = 3) -> list[str]:
    """Plant a small corpus, upload its shards and reference to S3; return the input names."""
    corpus = make_corpus(
        workdir / "corpus",
        CorpusSpec(items_per_benchmark=3, held_out_per_benchmark=1, docs_per_kind=2, files=files),
    )
    client.create_bucket(Bucket=BUCKET)
    for rel in corpus.files:
        client.upload_file(str(corpus.train_dir / rel), BUCKET, INPUT_PREFIX + rel)
    for path in sorted(corpus.reference_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(corpus.reference_dir).as_posix()
            client.upload_file(str(path), BUCKET, REFERENCE_PREFIX + rel)
    return list(corpus.files)


def job_config(**node: Any) -> Config:
    """The job as an operator would write it for EC2, pointed at the harness's services."""
    data: dict[str, Any] = {
        "job": {"id": JOB_ID},
        "input": {"uri": f"s3://{BUCKET}/{INPUT_PREFIX}"},
        "output": {"uri": f"s3://{BUCKET}/out"},
        "reference": {"uri": f"s3://{BUCKET}/{REFERENCE_PREFIX}"},
        "aws": {"region": "us-east-1", "endpoint_url": S3_URL_IN_GUEST},
        "install": {
            "pip_spec": "decon-agent",
            "find_links": WHEELHOUSE_URL_IN_GUEST,
            "extra_pip_args": ["--no-index", "--no-compile", "--trusted-host", WHEELHOUSE_IP],
        },
    }
    if node:
        data["node"] = node
    return config_from_dict(data)


def keys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def only_success(client: Any) -> tuple[str, dict[str, Any]]:
    """(run id, body) of the job's one `_SUCCESS` sentinel."""
    found = [k for k in keys(client, BUCKET, f"out/{JOB_ID}/runs/") if k.endswith("/_SUCCESS")]
    assert len(found) == 1, found
    body = json.loads(client.get_object(Bucket=BUCKET, Key=found[0])["Body"].read())
    return found[0].split("/")[-2], body


def assert_reports_for_all(client: Any, inputs: list[str]) -> None:
    """Every input has exactly one report or `.clean` marker under reports/."""
    prefix = f"out/{JOB_ID}/reports/"
    outputs = keys(client, BUCKET, prefix)
    bases = [
        k.removeprefix(prefix).removesuffix(".report.jsonl").removesuffix(".clean") for k in outputs
    ]
    assert sorted(bases) == sorted(input_stem(name) for name in inputs), sorted(outputs)


def input_stem(name: str) -> str:
    """`part-a/shard-001.jsonl.gz` -> `part-a/shard-001` (how reports are named)."""
    for suffix in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".jsonl").removesuffix(".json")


@dataclass
class Observed:
    """What ssh showed of the decon unit while it ran (statuses in order, last journal)."""

    statuses: list[str] = field(default_factory=list)
    journal: str = ""


def watch_decon_until_poweroff(vm: Vm, timeout: float = 900, poll: float = 5) -> Observed:
    """Poll `systemctl status decon` and its journal over ssh until the guest powers off."""
    seen = Observed()
    deadline = time.monotonic() + timeout
    while vm.running() and time.monotonic() < deadline:
        try:
            status = vm.ssh(
                "systemctl status --no-pager --full decon", check=False, timeout=30, attempts=1
            )
            journal = vm.ssh(
                "journalctl --no-pager -o cat -u decon", check=False, timeout=30, attempts=1
            )
        except subprocess.TimeoutExpired:
            continue
        fresh = not seen.statuses or seen.statuses[-1] != status.stdout
        if status.returncode != 255 and "decon.service" in status.stdout and fresh:
            seen.statuses.append(status.stdout)
        if journal.returncode == 0 and journal.stdout.strip():
            seen.journal = journal.stdout
        time.sleep(poll)
    if vm.running():
        raise HarnessError(f"guest still up after {timeout:.0f}s\n{vm.console_tail()}")
    vm.wait_for_poweroff(timeout=30)
    return seen


def record_observation(name: str, seconds: float, seen: Observed) -> Path:
    """Save the statuses and journal the guest printed to build/e2e/<name>.observed.txt."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.observed.txt"
    parts = [f"scenario {name}: {seconds} s boot to poweroff"]
    for i, status in enumerate(seen.statuses):
        parts.append(f"--- systemctl status decon #{i} ---\n{status}")
    parts.append(f"--- journalctl -u decon ---\n{seen.journal}")
    path.write_text("\n".join(parts) + "\n")
    return path
