"""`make demo`: the whole node flow on one machine, nothing leaves 127.0.0.1.

1. an embedded S3 (moto server on 127.0.0.1) with training shards from `decon_synth`: real items
   of several benchmarks (from the installed data packages) planted in natural text, plus hard
   negatives; the reference items go to S3 in Decon's eval record format
2. the job's SQS queue (the same moto server) gets one message per training shard, as
   `decon launch` fills it (`run.distribution: queue`)
3. two nodes, each a `decon-wrapper` running `decon run` (take a file from the queue, download,
   detect, upload), then its finalizer writes the run's `_SUCCESS`; poweroff is a stub that
   records its call. Node B is SIGKILLed in the middle of its work: after the visibility
   timeout node A takes B's files and finishes the job. B's finalizer is then run by hand, as an
   operator would, and writes B's interrupted `_SUCCESS`
4. prints each node's files, the report summary and both sentinels, then the recall/precision
   of the reports against the corpus's ground truth (decon_synth.evaluate)

Everything lives under build/demo/ (wiped at start).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import yaml
from moto.server import ThreadedMotoServer

from decon.config import config_from_dict
from decon.jobrun.workqueue import fill_job_queue
from decon_synth.evaluate import evaluate_dirs, kind_table
from decon_synth.plant import CorpusSpec, make_corpus

REPO = Path(os.environ.get("DEMO_REPO", Path(__file__).resolve().parent.parent))
ROOT = REPO / "build" / "demo"
CORPUS, RESULTS = "demo-corpus", "demo-results"
NODES = ("a", "b")
VISIBILITY_SECONDS = 8  # how long a killed node's files wait before another node takes them
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
    (ROOT / "bin").mkdir(parents=True)
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
        configs = {name: write_node_config(name, endpoint) for name in NODES}
        fill = fill_job_queue(config_from_dict(yaml.safe_load(configs["a"].read_text()), env={}))
        print(f"demo: queue {fill.url}: {fill.enqueued} files enqueued")

        nodes = {name: start_node(configs[name], env) for name in NODES}
        log_b = ROOT / "b" / "var/log/decon-run.log"
        if wait_for(lambda: " FILE_RECEIVED " in read(log_b), 300):
            kill_session(nodes["b"].pid)
            nodes["b"].wait()
            print(
                "demo: node b SIGKILLed (wrapper and job) while holding a file; its messages "
                f"return to the queue after the {VISIBILITY_SECONDS} s visibility timeout"
            )
        code = nodes["a"].wait()
        print(f"demo: node a exit code {code}")
        finalize = [sys.executable, "-m", "decon.node.finalizer", "--config", str(configs["b"])]
        finalize += ["--status", "interrupted", "--exit-code", "137", "--reason", "SIGKILL"]
        print("demo: $ " + " ".join(finalize[1:]) + "    (node b, by hand)")
        subprocess.call(finalize, env=env)
        per_node(corpus.files)
        summarize(s3)
        score_reports(s3, corpus.truth_path)
        for name in NODES:
            calls = ROOT / name / "poweroff.calls"
            shown = calls.read_text().strip() if calls.exists() else "none"
            print(f"demo: node {name} poweroff stub calls: {shown}")
        return code
    finally:
        server.stop()


def write_node_config(name: str, endpoint: str) -> Path:
    """Node `name`'s job file: the shared job, its own state, log and lock under build/demo/NAME."""
    root = ROOT / name
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock"):
        (root / sub).mkdir(parents=True)
    poweroff = root / "poweroff-stub"
    poweroff.write_text(f'#!/bin/sh\necho "poweroff $*" >> {root / "poweroff.calls"}\n')
    poweroff.chmod(0o755)
    py = sys.executable
    config = {
        "job": {"id": "demo-job"},
        "input": {"uri": f"s3://{CORPUS}/train/"},
        "output": {"uri": f"s3://{RESULTS}/decon"},
        "reference": {"uri": f"s3://{CORPUS}/evals/"},
        "detect": {"purify": True},
        "aws": {"endpoint_url": endpoint},
        "run": {
            "heartbeat_seconds": 2,
            "distribution": "queue",
            "visibility_timeout_seconds": VISIBILITY_SECONDS,
            "download_concurrency": 1,
        },
        "node": {
            "hooks_dir": str(root / "etc/decon/hooks"),
            "state_dir": str(root / "var/lib/decon"),
            "log_file": str(root / "var/log/decon-run.log"),
            "lock_file": str(root / "var/lock/decon.finalize.lock"),
            "instance_id": f"i-demo000000000000{NODES.index(name) + 1}",
            "job_command": [py, "-m", "decon.cli", "run"],
            "finalize_command": [py, "-m", "decon.node.finalizer"],
            "poweroff_command": [str(poweroff)],
        },
    }
    detector = os.environ.get("DEMO_DETECTOR")
    if detector:
        config["node"]["job_command"] += ["--detector", detector]
    path = root / "etc/decon/config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_node(config: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "decon.node.wrapper", "--config", str(config)]
    print("demo: $ " + " ".join(command[1:]))
    # Its own process group: SIGKILL takes the wrapper and its job, as a lost instance would.
    return subprocess.Popen(command, env=env, start_new_session=True)


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (the wrapper runs the job in a group of its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def wait_for(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def files_of(log_lines: list[str], event: str) -> list[str]:
    return [x.split(" file=", 1)[1].split()[0] for x in log_lines if f" {event} " in x]


def per_node(files: list[str]) -> None:
    """Which node finished which file: every file exactly once over both."""
    print("\n== files per node ==")
    done: Counter[str] = Counter()
    lost: set[str] = set()
    for name in NODES:
        lines = read(ROOT / name / "var/log/decon-run.log").splitlines()
        finished = files_of(lines, "FILE_DONE")
        skipped = len(files_of(lines, "FILE_SKIPPED"))
        done.update(finished)
        lost |= set(files_of(lines, "FILE_RECEIVED")) - set(finished)
        print(f"node {name}: {len(finished)} files done, {skipped} redelivered files skipped")
    if lost:
        print(f"taken over after node b was killed: {', '.join(sorted(lost))}")
    twice = [f for f, n in done.items() if n > 1]
    missing = sorted(set(files) - set(done))
    print(
        f"files: {len(files)}; done once: {sum(n == 1 for n in done.values())}; "
        f"done twice: {twice or 'none'}; not done: {missing or 'none'}"
    )


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
