"""Transient S3 faults (503, 500, connection resets, truncated bodies) during download and
upload are survived; a permanently failing object is reported and does not stop the job.
Real boto3 -> fault-injecting proxy -> moto server."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_config
from decon.jobrun.job import EXIT_DONE, EXIT_FILES_FAILED
from decon.node.state import NodeState
from fakes.jobrun_world import (
    IN_BUCKET,
    IN_PREFIX,
    MARKER,
    OUT_BUCKET,
    basename,
    done_names,
    job_sections,
    keys,
    put_shards,
    run_inline,
)


def big_contaminated_shard(client, rel: str, mb: int = 7) -> None:  # type: ignore[no-untyped-def]
    line = json.dumps({"text": "filler words " * 40}).encode() + b"\n"
    bad = json.dumps({"text": f"x {MARKER} y"}).encode() + b"\n"
    body = bad + line * (mb * (1 << 20) // len(line))
    client.put_object(Bucket=IN_BUCKET, Key=IN_PREFIX + rel, Body=body)


def test_transient_faults_in_download_and_upload_are_survived(
    s3, faulty_proxy, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 8)
    big_contaminated_shard(client, "big/huge.jsonl")  # multipart both ways (5 MB parts)
    truth["big/huge.jsonl"] = True
    # downloads (GET of input objects), including ranged part GETs of the big file
    faulty_proxy.fail("503", method="GET", key_contains=f"/{IN_BUCKET}/{IN_PREFIX}part-0/", times=2)
    faulty_proxy.fail(
        "reset", method="GET", key_contains=f"/{IN_BUCKET}/{IN_PREFIX}part-1/", times=1
    )
    faulty_proxy.fail(
        "truncate", method="GET", key_contains=f"/{IN_BUCKET}/{IN_PREFIX}part-2/", times=1
    )
    faulty_proxy.fail(
        "truncate", method="GET", key_contains=f"/{IN_BUCKET}/{IN_PREFIX}big/huge.jsonl", times=2
    )
    faulty_proxy.fail(
        "500", method="GET", key_contains=f"/{IN_BUCKET}/{IN_PREFIX}big/huge.jsonl", times=1
    )
    # uploads: single PUTs of reports and markers, a multipart part, the completion
    faulty_proxy.fail(
        "503", method="PUT", key_contains=f"/{OUT_BUCKET}/out/test-job/reports/part-0/", times=2
    )
    faulty_proxy.fail(
        "reset", method="PUT", key_contains=f"/{OUT_BUCKET}/out/test-job/reports/part-1/", times=1
    )
    faulty_proxy.fail("503", method="PUT", key_contains="partNumber=2", times=1)
    faulty_proxy.fail("reset", method="POST", key_contains="uploadId=", times=1)
    # listing
    faulty_proxy.fail("503", method="GET", key_contains=f"/{IN_BUCKET}?list-type=2", times=1)
    cfg = make_config(
        node_root,
        **job_sections(
            node_root,
            aws={"endpoint_url": faulty_proxy.endpoint},
            detect={"purify": True},
            run={"multipart_threshold_mb": 5, "multipart_chunk_mb": 5},
        ),
    )
    assert run_inline(cfg) == EXIT_DONE
    assert all(rule.hits == rule.times for rule in faulty_proxy.rules), [
        (rule.action, rule.key_contains, rule.hits) for rule in faulty_proxy.rules
    ]
    assert done_names(client, cfg) == {basename(r) for r in truth}
    cleaned = client.get_object(Bucket=OUT_BUCKET, Key="out/test-job/cleaned/big/huge.clean.jsonl")
    original = client.get_object(Bucket=IN_BUCKET, Key=IN_PREFIX + "big/huge.jsonl")["Body"].read()
    assert cleaned["Body"].read() == original.split(b"\n", 1)[1]  # only the bad line dropped
    assert NodeState(cfg.node.state_dir).progress()["failed"] == 0
    assert "STATE: S3_RETRY" in Path(cfg.node.log_file).read_text()


def test_permanently_failing_object_is_reported_and_the_job_goes_on(
    s3, faulty_proxy, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 6)
    doomed = sorted(truth)[0]
    faulty_proxy.fail(
        "503", method=None, key_contains=f"/{IN_BUCKET}/{IN_PREFIX}{doomed}", times=-1
    )
    cfg = make_config(
        node_root, **job_sections(node_root, aws={"endpoint_url": faulty_proxy.endpoint})
    )
    assert run_inline(cfg) == EXIT_FILES_FAILED
    assert done_names(client, cfg) == {basename(r) for r in truth if r != doomed}
    progress = NodeState(cfg.node.state_dir).progress()
    assert progress["failed"] == 1 and progress["done"] == 5
    (failed,) = progress["failed_files"]
    assert failed["rel"] == doomed and failed["stage"] == "download"
    assert "503" in failed["error"] or "SlowDown" in failed["error"]
    attempts = [r for r in faulty_proxy.requests if doomed in r.path]
    assert len(attempts) == cfg.run.retry_attempts  # one layer of retries, not multiplied
    assert not [k for k in keys(client, OUT_BUCKET) if basename(doomed) + "." in k]


def test_upload_that_keeps_failing_leaves_the_file_not_done(
    s3, faulty_proxy, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 4, contaminated_every=1)
    victim = sorted(truth)[0]
    report = f"out/test-job/reports/{basename(victim)}.report.jsonl"
    faulty_proxy.fail("500", method="PUT", key_contains=f"/{OUT_BUCKET}/{report}", times=-1)
    cfg = make_config(
        node_root,
        **job_sections(
            node_root, aws={"endpoint_url": faulty_proxy.endpoint}, detect={"purify": True}
        ),
    )
    assert run_inline(cfg) == EXIT_FILES_FAILED
    assert basename(victim) not in done_names(client, cfg)  # its cleaned copy may exist
    (failed,) = NodeState(cfg.node.state_dir).progress()["failed_files"]
    assert failed["rel"] == victim and failed["stage"] == "upload"
    scratch = Path(cfg.node.state_dir) / "work" / "jobrun"
    assert [p for p in scratch.rglob("*") if p.is_file()] == []


class TimedLines:
    """An event stream that notes when each line arrived."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> None:
        import time

        self.lines += [(time.monotonic(), x) for x in text.splitlines() if x]

    def flush(self) -> None:
        pass


def test_an_unreachable_endpoint_is_named_at_once_and_every_retry_logged(
    s3, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    from decon.eventlog import EventLog
    from decon.jobrun.job import EXIT_CANNOT_RUN, JobContext, run_job
    from decon.jobrun.signals import StopRequest
    from decon.node.notify import Notifier

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = make_config(
        node_root,
        **job_sections(
            node_root,
            aws={"endpoint_url": f"http://127.0.0.1:{port}"},
            run={"retry_attempts": 4, "retry_base_seconds": 0.4, "retry_max_seconds": 0.4},
        ),
    )
    stream = TimedLines()
    ctx = JobContext(EventLog(cfg.node.log_file, stream), Notifier(enabled=False), StopRequest())
    start = time.monotonic()
    assert run_job(cfg, ctx) == EXIT_CANNOT_RUN
    waiting = [(t, x) for t, x in stream.lines if "STATE: WAITING" in x]
    assert waiting and waiting[0][0] - start < 2.0
    assert f'on="list input s3://{IN_BUCKET}/{IN_PREFIX}"' in waiting[0][1]
    retries = [x for _, x in stream.lines if "STATE: S3_RETRY" in x]
    assert len(retries) == 3
    for attempt, line in enumerate(retries, 1):
        assert f"attempt={attempt} " in line and "wait=0.4" in line
        assert f'op="list s3://{IN_BUCKET}/{IN_PREFIX}"' in line
        assert "Could not connect to the endpoint URL" in line
    assert "STATE: RUN_ABORTED stage=list" in stream.lines[-1][1]
    assert Path(cfg.node.log_file).read_text().count("STATE: S3_RETRY") == 3
