"""Throughput of `decon run`'s S3 side on a local moto server (prints figures; not a test).

A pass-through detector (every file clean, no output but the marker) isolates list + download +
upload. moto is far slower than S3, so the figures are a floor for the pipeline overhead.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from decon.config import config_from_dict
from decon.eventlog import EventLog
from decon.jobrun.job import JobContext, run_job
from decon.jobrun.signals import StopRequest
from decon.node.notify import Notifier


def passthrough(cfg, reference_dir):  # type: ignore[no-untyped-def]
    class Result:
        lines = bytes = matches = contaminated_lines = malformed = 0
        cancelled = False

    def detect(src, rel, report, cleaned, cancel=None):  # type: ignore[no-untyped-def]
        with open(src, "rb") as fh:
            while fh.read(1 << 20):
                pass
        return Result()

    return detect


def main() -> None:
    files, mb = int(os.environ.get("FILES", 32)), int(os.environ.get("MB", 8))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench-in")
    s3.create_bucket(Bucket="bench-out")
    line = (json.dumps({"text": "word " * 200}) + "\n").encode()
    body = line * (mb * (1 << 20) // len(line))
    for i in range(files):
        s3.put_object(Bucket="bench-in", Key=f"d/f{i:04d}.jsonl", Body=io.BytesIO(body))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ref").mkdir()
        for concurrency in (1, 4):
            cfg = config_from_dict(
                {
                    "job": {"id": f"bench-{concurrency}"},
                    "input": {"uri": "s3://bench-in/d/"},
                    "output": {"uri": "s3://bench-out/o"},
                    "reference": {"uri": str(root / "ref")},
                    "aws": {"endpoint_url": endpoint},
                    "run": {"download_concurrency": concurrency, "upload_concurrency": 4},
                    "node": {
                        "state_dir": str(root / f"state{concurrency}"),
                        "log_file": str(root / "log"),
                    },
                },
                env={},
            )
            start = time.perf_counter()
            ctx = JobContext(
                EventLog(root / "log", io.StringIO()),
                Notifier(enabled=False),
                StopRequest(),
                passthrough,
            )
            code = run_job(cfg, ctx)
            seconds = time.perf_counter() - start
            total = files * len(body) / (1 << 20)
            print(
                f"download_concurrency={concurrency}: {files} files x {mb} MB = {total:.0f} MB "
                f"in {seconds:.1f} s = {total / seconds:.0f} MB/s (exit {code})"
            )
    server.stop()


if __name__ == "__main__":
    sys.exit(main())
