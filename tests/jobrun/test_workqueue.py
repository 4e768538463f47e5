"""Queue distribution (`run.distribution: queue`) on the moto server: real SQS semantics
(visibility timeouts, ChangeMessageVisibility, redrive to the DLQ) with real boto3."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from pathlib import Path

import pytest

from conftest import make_config
from decon.config import Config, ConfigError
from decon.eventlog import EventLog
from decon.fleet import status
from decon.jobrun.inputs import InputFile
from decon.jobrun.job import EXIT_DONE, EXIT_FILES_FAILED
from decon.jobrun.signals import StopRequest
from decon.jobrun.workqueue import (
    create_job_queues,
    decode_file,
    encode_file,
    enqueue_files,
    queue_name,
    sqs_client,
)
from decon.node.finalizer import FinalizeRequest, finalize_run
from decon.node.state import NodeState
from fakes.jobrun_world import (
    IN_BUCKET,
    IN_PREFIX,
    OUT_BUCKET,
    basename,
    done_names,
    job_sections,
    put_shards,
    run_inline,
    write_job_file,
)


def queue_config(root: Path, **run: object) -> Config:
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    settings = {"distribution": "queue", "visibility_timeout_seconds": 30, **run}
    return make_config(root, **job_sections(root, run=settings))


def fill_queue(cfg: Config, client, rels: list[str]) -> str:  # type: ignore[no-untyped-def]
    url = create_job_queues(sqs_client(cfg), cfg)
    files = []
    for rel in rels:
        size = client.head_object(Bucket=IN_BUCKET, Key=IN_PREFIX + rel)["ContentLength"]
        files.append(InputFile(rel, size, f"s3://{IN_BUCKET}/{IN_PREFIX}{rel}"))
    enqueue_files(sqs_client(cfg), url, files)
    return url


def counts(cfg: Config, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs_client(cfg).get_queue_attributes(QueueUrl=url, AttributeNames=names)
    return tuple(int(attrs["Attributes"][n]) for n in names)  # type: ignore[return-value]


def events(cfg: Config, name: str) -> list[str]:
    log = Path(cfg.node.log_file)
    lines = log.read_text().splitlines() if log.exists() else []
    return [x for x in lines if f" {name} " in x]


def test_message_round_trip_and_queue_name() -> None:
    item = InputFile("a/b.jsonl.gz", 12, "s3://bucket/in/a/b.jsonl.gz")
    assert decode_file(encode_file(item)) == item
    assert queue_name("my job/1") == "decon-my-job-1"
    assert queue_name("x" * 100, dead_letter=True).endswith("-dlq")
    assert len(queue_name("x" * 100, dead_letter=True)) == 80


def test_config_checks_queue_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run.distribution"):
        make_config(tmp_path, run={"distribution": "round-robin"})
    with pytest.raises(ConfigError, match="visibility_timeout_seconds"):
        make_config(tmp_path, run={"heartbeat_seconds": 30, "visibility_timeout_seconds": 45})
    with pytest.raises(ConfigError, match="max_receive_count"):
        make_config(tmp_path, run={"max_receive_count": 0})


def test_two_nodes_share_the_queue_and_do_every_file_once(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 8)
    a, b = queue_config(tmp_path / "a"), queue_config(tmp_path / "b")
    url = fill_queue(a, client, list(truth))
    codes: dict[str, int] = {}
    threads = [
        threading.Thread(target=lambda n=n, c=c: codes.__setitem__(n, run_inline(c)))
        for n, c in (("a", a), ("b", b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes == {"a": EXIT_DONE, "b": EXIT_DONE}
    assert done_names(client, a) == {basename(r) for r in truth}
    done = [line.split(" file=")[1].split()[0] for c in (a, b) for line in events(c, "FILE_DONE")]
    assert sorted(done) == sorted(truth)  # each file exactly once over both nodes
    assert counts(a, url) == (0, 0)
    progress = [NodeState(c.node.state_dir).progress() for c in (a, b)]
    assert sum(p["done"] for p in progress) == 8
    assert all(p["assigned"] == p["done"] for p in progress)


def test_heartbeat_extends_a_slow_file_past_the_visibility_timeout(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 1, lines=30)
    cfg = queue_config(tmp_path / "a", visibility_timeout_seconds=2, heartbeat_seconds=0.5)
    url = fill_queue(cfg, client, list(truth))
    monkeypatch.setenv("FAKE_DETECT_SLEEP", "0.15")  # 30 lines: about 4.5 s, twice the timeout
    assert run_inline(cfg) == EXIT_DONE
    assert events(cfg, "FILE_RECEIVED") and len(events(cfg, "FILE_DONE")) == 1
    # Never redelivered: the message was received once, then deleted.
    assert events(cfg, "FILE_SKIPPED") == [] and len(events(cfg, "FILE_RECEIVED")) == 1
    assert counts(cfg, url) == (0, 0)


def test_a_dead_nodes_file_is_done_by_another_after_the_timeout(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 2)
    cfg = queue_config(tmp_path / "b", visibility_timeout_seconds=2, heartbeat_seconds=0.5)
    url = fill_queue(cfg, client, list(truth))
    # A node that received a file and was SIGKILLed: it never extends nor deletes.
    taken = sqs_client(cfg).receive_message(QueueUrl=url, VisibilityTimeout=2)["Messages"][0]
    lost = decode_file(taken["Body"]).rel
    t0 = time.monotonic()
    assert run_inline(cfg) == EXIT_DONE
    assert time.monotonic() - t0 >= 1.5  # it waited for the lost message to come back
    assert done_names(client, cfg) == {basename(r) for r in truth}
    assert any(f"file={lost}" in x for x in events(cfg, "FILE_DONE"))


def test_stop_releases_the_file_at_once(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 1, lines=200)
    cfg = queue_config(tmp_path / "a", visibility_timeout_seconds=600)
    url = fill_queue(cfg, client, list(truth))
    monkeypatch.setenv("FAKE_DETECT_SLEEP", "0.05")
    stop = StopRequest()
    result: list[int] = []
    node = threading.Thread(target=lambda: result.append(run_inline(cfg, stop=stop)))
    node.start()
    deadline = time.monotonic() + 30
    while not events(cfg, "FILE_START") and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.request(15)
    node.join(30)
    assert result == [143]
    # Visible again at once, although the visibility timeout is 10 minutes.
    again = sqs_client(cfg).receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert [decode_file(m["Body"]).rel for m in again.get("Messages", [])] == list(truth)
    assert done_names(client, cfg) == set()


def test_a_poison_file_lands_in_the_dead_letter_queue(s3, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 2)
    client.put_object(Bucket=IN_BUCKET, Key=IN_PREFIX + "bad/poison.jsonl.gz", Body=b"not gzip")
    cfg = queue_config(tmp_path / "a", max_receive_count=3)
    url = fill_queue(cfg, client, [*truth, "bad/poison.jsonl.gz"])
    assert run_inline(cfg) == EXIT_FILES_FAILED
    failed = [x for x in events(cfg, "FILE_FAILED") if "poison" in x]
    assert len(failed) == 3  # received, failed and released three times
    assert done_names(client, cfg) == {basename(r) for r in truth}
    assert counts(cfg, url) == (0, 0)
    dlq = sqs_client(cfg).get_queue_url(QueueName=queue_name(cfg.job.id, dead_letter=True))
    dead = sqs_client(cfg).receive_message(
        QueueUrl=dlq["QueueUrl"], WaitTimeSeconds=1, VisibilityTimeout=0
    )
    assert [decode_file(m["Body"]).rel for m in dead["Messages"]] == ["bad/poison.jsonl.gz"]

    # decon status names it, with the error from the run's uploaded log.
    finalize_run(
        cfg,
        FinalizeRequest(status="normal", exit_code=1, poweroff=False),
        log=EventLog(cfg.node.log_file, io.StringIO()),
        journal=lambda unit, dest: "journalctl not found",
    )
    job = write_job_file(cfg, tmp_path / "job.yaml")
    args = argparse.ArgumentParser()
    status.configure(args)
    status.run(args.parse_args(["--config", str(job), "--no-ec2"]))
    shown = capsys.readouterr().out
    assert "queue: 0 waiting, 0 in flight, 1 dead-letter" in shown
    assert "dead-letter: bad/poison.jsonl.gz (failed 3 times: " in shown
    assert "gzip" in shown.split("dead-letter: bad/poison.jsonl.gz", 1)[1], shown


def test_a_duplicate_delivery_is_skipped(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 1)
    (rel,) = truth
    cfg = queue_config(tmp_path / "a")
    url = fill_queue(cfg, client, [rel])
    assert run_inline(cfg) == EXIT_DONE
    # At-least-once delivery: the same file arrives again (or a resend).
    fill_queue(cfg, client, [rel])
    before = {
        o["Key"]: o["ETag"]
        for o in client.list_objects_v2(Bucket=OUT_BUCKET)["Contents"]
        if "/reports/" in o["Key"]
    }
    assert run_inline(cfg) == EXIT_DONE
    assert len(events(cfg, "FILE_SKIPPED")) == 1
    assert len(events(cfg, "FILE_DONE")) == 1  # the first run only
    after = {
        o["Key"]: o["ETag"]
        for o in client.list_objects_v2(Bucket=OUT_BUCKET)["Contents"]
        if "/reports/" in o["Key"]
    }
    assert after == before
    assert counts(cfg, url) == (0, 0)
    assert json.loads(Path(cfg.node.state_dir, "progress.json").read_text())["skipped"] == 1
