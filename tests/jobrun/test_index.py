"""The job's reference index is built once per job (moto server over real boto3): the first
node builds and uploads it with a conditional write; a second node downloads and maps it."""

from __future__ import annotations

import io
import json
from pathlib import Path

from conftest import make_config
from decon.eventlog import EventLog
from decon.jobrun.detect_step import builtin_detector, index_prefix
from decon.jobrun.job import EXIT_DONE, JobContext, run_job
from decon.jobrun.signals import StopRequest
from decon.node.notify import Notifier
from decon.storage import open_storage
from fakes.jobrun_world import MARKER, OUT_BUCKET, done_names, job_sections, keys, put_shards

DETECT = {"eval_min_token_length": 0, "workers": 1}


def write_reference(root: Path) -> Path:
    ref = root / "evals"
    ref.mkdir(parents=True)
    records = [{"eval_key": "quiz", "eval_instance_index": 0, "question": MARKER}]
    records += [
        {"eval_key": "quiz", "eval_instance_index": i, "question": f"unrelated question {i} here"}
        for i in range(1, 6)
    ]
    (ref / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return ref


def host(root: Path, index: int, ref: Path, name: str = "", **detect: object) -> object:
    base = root / (name or f"host{index}")
    for sub in ("var/lib/decon", "var/log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return make_config(
        base,
        **job_sections(
            base,
            job={"id": "test-job", "host_index": index, "host_count": 2},
            reference={"uri": str(ref)},
            detect={**DETECT, **detect},
        ),
    )


def run(cfg) -> int:  # type: ignore[no-untyped-def]
    ctx = JobContext(
        EventLog(cfg.node.log_file, io.StringIO()),
        Notifier(enabled=False),
        StopRequest(),
        detector_factory=builtin_detector,
    )
    return run_job(cfg, ctx)


def test_first_node_builds_and_uploads_the_index_the_second_reuses_it(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 6)
    ref = write_reference(node_root)
    first, second = host(node_root, 0, ref), host(node_root, 1, ref)

    assert run(first) == EXIT_DONE
    log = Path(first.node.log_file).read_text()
    assert "INDEX_BUILT" in log and "INDEX_UPLOADED" in log and "INDEX_REUSED" not in log
    stored = keys(client, OUT_BUCKET, "out/test-job/index/")
    assert len(stored) == 1
    (key,) = stored
    assert index_prefix(first) == f"s3://{OUT_BUCKET}/out/test-job/index/"

    assert run(second) == EXIT_DONE
    log = Path(second.node.log_file).read_text()
    assert "INDEX_REUSED" in log and "INDEX_BUILT" not in log
    local = Path(second.node.state_dir) / "work" / "index" / key.rsplit("/", 1)[1]
    body = client.get_object(Bucket=OUT_BUCKET, Key=key)["Body"].read()
    assert local.read_bytes() == body
    # Both halves detected with it: every contaminated shard has its report.
    assert done_names(client, first) == done_names(client, second)
    reports = [k for k in keys(client, OUT_BUCKET, "out/test-job/reports/") if k.endswith(".jsonl")]
    assert len(reports) == sum(truth.values())

    # The conditional write: a second upload of the same key loses (moto answers 412).
    storage = open_storage(index_prefix(first), first.aws)
    assert storage.put_file_if_absent(key.rsplit("/", 1)[1], local) is False

    # Other options shaping the index: another file, never the first one.
    other = host(node_root, 0, ref, "other-options", ngram_size=4)
    builtin_detector(other, ref)
    assert len(keys(client, OUT_BUCKET, "out/test-job/index/")) == 2
    assert "INDEX_BUILT" in Path(other.node.log_file).read_text()
