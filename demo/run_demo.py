"""`make demo`: the whole node flow on one machine, nothing leaves 127.0.0.1.

1. an embedded S3 (moto server on 127.0.0.1) with training shards from `decon.synth`: real items
   of several benchmarks (from the installed data packages) planted in natural text, plus hard
   negatives; the reference items go to S3 in Decon's eval record format
2. `decon-wrapper` runs `decon run` (this host's shard: download, detect, upload per file),
   then the finalizer writes the run's `_SUCCESS`; poweroff is a stub that records its call
3. prints the report summary and the sentinel, then the recall/precision of the run's reports
   against the corpus's ground truth (decon.synth.evaluate)

Everything lives under build/demo/ (wiped at start).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import yaml
from moto.server import ThreadedMotoServer

from decon.synth.evaluate import evaluate_dirs, kind_table
from decon.synth.plant import CorpusSpec, make_corpus

REPO = Path(os.environ.get("DEMO_REPO", Path(__file__).resolve().parent.parent))
ROOT = REPO / "build" / "demo"
CORPUS, RESULTS = "demo-corpus", "demo-results"
# Real items of several benchmarks planted in natural text, all kinds (positives and hard
# negatives), mixed compressions: ground truth for the recall/precision printed at the end.
CORPUS_SPEC = CorpusSpec(
    seed=7,
    benchmarks=("humaneval", "gsm8k", "mmlu", "hellaswag", "arc_challenge", "squad", "mbpp"),
    items_per_benchmark=8,
    held_out_per_benchmark=2,
    docs_per_kind=12,
    files=10,
    subdirs=("crawl-0", "crawl-1"),
    compression="mixed",
    long_doc_chars=20_000,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        corpus = make_corpus(ROOT / "corpus", CORPUS_SPEC)
        for path in sorted(corpus.reference_dir.rglob("*")):
            if path.is_file():
                rel = path.relative_to(corpus.reference_dir).as_posix()
                s3.upload_file(str(path), CORPUS, f"evals/{rel}")
        for rel in corpus.files:
            s3.upload_file(str(corpus.train_dir / rel), CORPUS, f"train/{rel}")
        print(
            f"demo: S3 at {endpoint}: {len(corpus.files)} training shards "
            f"({corpus.documents} documents, {corpus.bytes_uncompressed / 1e6:.1f} MB), "
            f"{corpus.reference_items} eval items from {len(CORPUS_SPEC.benchmarks or ())} "
            "benchmarks"
        )

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
        score_reports(s3, corpus.truth_path)
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


def score_reports(s3, truth_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Download the run's reports and score them against the corpus's ground truth."""
    local = ROOT / "reports"
    marker = "/reports/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=RESULTS, Prefix="decon/"):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(".report.jsonl") and marker in key:
                dest = local / key.split(marker, 1)[1]
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(RESULTS, key, str(dest))
    local.mkdir(parents=True, exist_ok=True)
    result = evaluate_dirs(truth_path, local)
    print("\n== detection quality against the planted ground truth ==")
    print(
        f"recall {result.recall():.3f}  right item {result.item_recall():.3f}  "
        f"precision {result.precision():.3f}  false positives {result.false_positives()}"
    )
    print(kind_table(result))
    print(
        "(The default finds verbatim, question+answer, embedded and lightly edited items; "
        "paraphrases (heavy_edit) need `detect.mode: toxic`. With `detect.compat: decon` "
        "question-only leaks and items under 20 tokens are not found.)"
    )


if __name__ == "__main__":
    sys.exit(main())
