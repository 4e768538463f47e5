"""`decon run` in-process against the moto server with real boto3 (marker detector)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from conftest import make_config
from decon.errors import UserError
from decon.jobrun.heartbeat import HeartbeatRecord
from decon.jobrun.job import EXIT_DONE, EXIT_FILES_FAILED
from decon.jobrun.signals import StopRequest
from decon.node.state import NodeState
from fakes import marker_detector
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
    shard_bytes,
)


def test_full_run_publishes_every_file(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 12)
    cfg = make_config(node_root, **job_sections(node_root, detect={"purify": True}))
    assert run_inline(cfg) == EXIT_DONE

    out = keys(client, OUT_BUCKET, "out/test-job/")
    for rel, contaminated in truth.items():
        base = basename(rel)
        report = f"out/test-job/reports/{base}.report.jsonl"
        marker = f"out/test-job/reports/{base}.clean"
        cleaned = [k for k in out if k.startswith(f"out/test-job/cleaned/{base}.clean.jsonl")]
        if contaminated:
            assert report in out and marker not in out
            ext = rel.rsplit(".json", 1)[1].removeprefix("l")  # compression ending
            assert cleaned == [f"out/test-job/cleaned/{base}.clean.jsonl{ext}"]
            body = client.get_object(Bucket=OUT_BUCKET, Key=report)["Body"].read().decode()
            assert all(json.loads(x)["training_file"] == rel for x in body.splitlines())
        else:
            assert marker in out and out[marker] == 0 and report not in out and not cleaned

    state = NodeState(cfg.node.state_dir)
    progress = state.progress()
    n_bad = sum(truth.values())
    assert progress["assigned"] == progress["done"] == 12
    assert progress["contaminated"] == n_bad and progress["failed"] == 0
    assert progress["failed_files"] == []
    uploads = state.uploads()
    assert len(uploads) == 12 + n_bad  # marker or report per file + cleaned per contaminated
    for record in uploads:
        key = record["uri"].removeprefix(f"s3://{OUT_BUCKET}/")
        data = client.get_object(Bucket=OUT_BUCKET, Key=key)["Body"].read()
        assert record["size"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()

    run_id = state.run_id()
    beat = HeartbeatRecord.from_json(
        client.get_object(Bucket=OUT_BUCKET, Key=f"out/test-job/runs/{run_id}/heartbeat.json")[
            "Body"
        ].read()
    )
    assert beat.state == "done" and beat.files.done == 12 and beat.files.contaminated == n_bad
    assert beat.bytes_done == beat.bytes_total > 0
    scratch = Path(cfg.node.state_dir) / "work" / "jobrun"
    assert [p for p in scratch.rglob("*") if p.is_file()] == []  # local copies deleted
    log = Path(cfg.node.log_file).read_text()
    assert log.count("STATE: FILE_DONE") == 12 and "STATE: RUN_SUMMARY" in log


def test_cleaned_copy_keeps_compression_and_drops_only_bad_lines(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    put_shards(client, 4, contaminated_every=1)
    cfg = make_config(node_root, **job_sections(node_root, detect={"purify": True}))
    assert run_inline(cfg) == EXIT_DONE
    rel = "part-1/shard-0001.jsonl.gz"
    got = client.get_object(
        Bucket=OUT_BUCKET, Key="out/test-job/cleaned/part-1/shard-0001.clean.jsonl.gz"
    )
    local = node_root / "c.jsonl.gz"
    local.write_bytes(got["Body"].read())
    kept = marker_detector.read_lines(local)
    src = node_root / "s.jsonl.gz"
    src.write_bytes(shard_bytes(rel, 1, 21, True))
    original = marker_detector.read_lines(src)
    assert kept == [line for line in original if MARKER.encode() not in line]
    assert 0 < len(kept) < len(original)


def test_rerun_after_partial_run_does_only_missing_files(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 9)
    cfg = make_config(node_root, **job_sections(node_root, run={"download_concurrency": 1}))
    stop = StopRequest()
    factory = marker_detector.marker_factory
    calls: list[str] = []

    def stopping_factory(cfg, ref):  # type: ignore[no-untyped-def]
        inner = factory(cfg, ref)

        def detect(src, rel, report, cleaned, cancel=None):  # type: ignore[no-untyped-def]
            calls.append(rel)
            result = inner(src, rel, report, cleaned, cancel)
            if len(calls) == 4:
                stop.request(15)
            return result

        return detect

    from io import StringIO

    from decon.eventlog import EventLog
    from decon.jobrun.job import JobContext, run_job
    from decon.node.notify import Notifier

    code = run_job(
        cfg,
        JobContext(
            EventLog(cfg.node.log_file, StringIO()), Notifier(enabled=False), stop, stopping_factory
        ),
    )
    assert code == 143
    first = done_names(client, cfg)
    assert len(first) == 4 and first == {basename(r) for r in calls}
    progress = NodeState(cfg.node.state_dir).progress()
    assert progress["done"] == 4 and progress["assigned"] == 9

    calls.clear()
    stop2 = StopRequest()

    def counting_factory(cfg, ref):  # type: ignore[no-untyped-def]
        inner = factory(cfg, ref)

        def detect(src, rel, report, cleaned, cancel=None):  # type: ignore[no-untyped-def]
            calls.append(rel)
            return inner(src, rel, report, cleaned, cancel)

        return detect

    code = run_job(
        cfg,
        JobContext(
            EventLog(cfg.node.log_file, StringIO()),
            Notifier(enabled=False),
            stop2,
            counting_factory,
        ),
    )
    assert code == EXIT_DONE
    assert {basename(r) for r in calls} == {basename(r) for r in truth} - first
    assert done_names(client, cfg) == {basename(r) for r in truth}
    progress = NodeState(cfg.node.state_dir).progress()
    assert progress["done"] == 9 and progress["skipped"] == 4
    assert progress["contaminated"] == sum(truth.values())  # counts earlier runs' reports too


def test_corrupt_file_is_recorded_as_failed_and_the_job_goes_on(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 5)
    client.put_object(Bucket=IN_BUCKET, Key=IN_PREFIX + "broken.jsonl.gz", Body=b"not gzip at all")
    cfg = make_config(node_root, **job_sections(node_root))
    assert run_inline(cfg) == EXIT_FILES_FAILED
    assert done_names(client, cfg) == {basename(r) for r in truth}
    progress = NodeState(cfg.node.state_dir).progress()
    assert progress["failed"] == 1 and progress["done"] == 5 and progress["assigned"] == 6
    (failed,) = progress["failed_files"]
    assert failed["rel"] == "broken.jsonl.gz" and failed["stage"] == "detect"
    assert failed["location"] == f"s3://{IN_BUCKET}/{IN_PREFIX}broken.jsonl.gz"
    log = Path(cfg.node.log_file).read_text()
    assert "STATE: FILE_FAILED file=broken.jsonl.gz stage=detect" in log


def test_max_files_debug_uploads_nothing(s3, node_root: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    put_shards(client, 6)
    cfg = make_config(
        node_root, **job_sections(node_root, job={"id": "test-job", "max_files_debug": 2})
    )
    assert run_inline(cfg) == EXIT_DONE
    assert keys(client, OUT_BUCKET) == {}
    state = NodeState(cfg.node.state_dir)
    assert state.uploads() == []
    assert state.progress()["done"] == 2
    outputs = Path(cfg.node.state_dir) / "work" / "jobrun" / "outputs"
    assert len([p for p in (outputs / "reports").rglob("*") if p.is_file()]) == 2
    assert len([p for p in (outputs.parent / "inputs").rglob("*") if p.is_file()]) == 2
    assert str(outputs) in capsys.readouterr().out
    (plan,) = [x for x in Path(cfg.node.log_file).read_text().splitlines() if "JOB_PLAN" in x]
    assert "assigned=6 " in plan and "todo=2 " in plan and "max_files_debug=2" in plan


def test_local_input_directory_is_read_in_place(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    client.create_bucket(Bucket=OUT_BUCKET)
    data = node_root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.jsonl").write_bytes(shard_bytes("a.jsonl", 0, 10, True))
    (data / "b.jsonl").write_bytes(shard_bytes("b.jsonl", 1, 10, False))
    cfg = make_config(node_root, **job_sections(node_root, input={"uri": str(data)}))
    assert run_inline(cfg) == EXIT_DONE
    assert done_names(client, cfg) == {"sub/a", "b"}
    assert (data / "sub" / "a.jsonl").exists()  # never deleted


def test_missing_input_bucket_is_a_user_error(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket=OUT_BUCKET)
    cfg = make_config(node_root, **job_sections(node_root, input={"uri": "s3://nope/x/"}))
    with pytest.raises(UserError, match="input.uri: bucket 'nope' does not exist"):
        run_inline(cfg)


def test_empty_input_prefix_is_a_user_error(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    put_shards(s3.client(), 1)
    cfg = make_config(
        node_root, **job_sections(node_root, input={"uri": f"s3://{IN_BUCKET}/typo/"})
    )
    with pytest.raises(UserError, match="no objects under"):
        run_inline(cfg)


def test_reference_prefix_is_downloaded_once(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 3)
    client.put_object(Bucket=IN_BUCKET, Key="evals/set/markers.txt", Body=(MARKER + "\n").encode())
    cfg = make_config(
        node_root, **job_sections(node_root, reference={"uri": f"s3://{IN_BUCKET}/evals/"})
    )
    assert run_inline(cfg) == EXIT_DONE
    ref = Path(cfg.node.state_dir) / "work" / "reference" / "set" / "markers.txt"
    assert ref.read_text().strip() == MARKER
    reports = [k for k in keys(client, OUT_BUCKET) if k.endswith(".report.jsonl")]
    assert len(reports) == sum(truth.values())
    log = Path(cfg.node.log_file).read_text()
    assert "REFERENCE_READY" in log and "downloaded=1" in log


def test_unexpected_detector_crash_does_not_hang_the_pipeline(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    """A detector that raises something other than Exception (a bug) ends the run promptly."""
    put_shards(s3.client(), 6)
    cfg = make_config(node_root, **job_sections(node_root, run={"max_disk_mb": 1}))

    class Bug(BaseException):
        pass

    def factory(cfg, ref):  # type: ignore[no-untyped-def]
        def detect(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise Bug()

        return detect

    from io import StringIO

    from decon.eventlog import EventLog
    from decon.jobrun.job import JobContext, run_job
    from decon.node.notify import Notifier

    ctx = JobContext(
        EventLog(cfg.node.log_file, StringIO()), Notifier(enabled=False), StopRequest(), factory
    )
    raised: list[BaseException] = []

    def target() -> None:
        try:
            run_job(cfg, ctx)
        except BaseException as exc:
            raised.append(exc)

    import threading

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "pipeline hung after a detector crash"
    assert len(raised) == 1 and isinstance(raised[0], Bug)


def test_three_hosts_together_do_every_file_exactly_once(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 15)
    uploaded: list[str] = []
    for index in range(3):
        root = node_root / f"host{index}"
        for sub in ("var/lib/decon", "var/log"):
            (root / sub).mkdir(parents=True)
        cfg = make_config(
            root, **job_sections(root, job={"id": "test-job", "host_index": index, "host_count": 3})
        )
        assert run_inline(cfg) == EXIT_DONE
        uploaded += [u["uri"] for u in NodeState(cfg.node.state_dir).uploads()]
    assert len(uploaded) == len(set(uploaded)) == 15  # one marker or report per file, no overlap
    assert done_names(client, cfg) == {basename(r) for r in truth}


def builtin_world(node_root: Path, client, content_key: str):  # type: ignore[no-untyped-def]
    """Two shards whose text is under `text`, an eval reference, decon's own detector."""
    question = (
        "which seven planets orbit the distant yellow star beyond the nebula called Kappa"
        " Orionis in the old atlas"
    )
    ref = node_root / "evals"
    ref.mkdir()
    (ref / "atlas.jsonl").write_text(
        json.dumps({"eval_key": "atlas", "eval_instance_index": 0, "question": question}) + "\n"
    )
    put_shards(client, 0)
    for i in range(2):
        body = "".join(
            json.dumps({"id": n, "text": f"plain words {n} " + (question if n == 3 else "")}) + "\n"
            for n in range(10)
        )
        client.put_object(Bucket=IN_BUCKET, Key=f"{IN_PREFIX}s{i}.jsonl", Body=body.encode())
    sections = job_sections(node_root, detect={"content_key": content_key, "workers": 1})
    sections["reference"] = {"uri": str(ref)}
    return make_config(node_root, **sections)


def run_builtin(cfg) -> int:  # type: ignore[no-untyped-def]
    import io

    from decon.eventlog import EventLog
    from decon.jobrun.job import JobContext, run_job
    from decon.node.notify import Notifier

    ctx = JobContext(
        EventLog(cfg.node.log_file, io.StringIO()), Notifier(enabled=False), StopRequest()
    )
    return run_job(cfg, ctx)


def test_a_wrong_content_key_fails_every_file_and_a_fixed_rerun_scans_them(
    s3, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    cfg = builtin_world(node_root, client, "body")
    assert run_builtin(cfg) == EXIT_FILES_FAILED
    log = Path(cfg.node.log_file).read_text()
    assert log.count("STATE: FILE_FAILED") == 2 and "stage=detect" in log
    assert "no line has a string at content key 'body'" in log and "keys found: id, text" in log
    assert keys(client, OUT_BUCKET, "out/test-job/reports/") == {}

    cfg2 = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, content_key="text"))
    assert run_builtin(cfg2) == EXIT_DONE
    log = Path(cfg.node.log_file).read_text()
    assert "already_done=0 todo=2" in log
    done = [x for x in log.splitlines() if "STATE: FILE_DONE" in x]
    assert len(done) == 2
    assert all("missing_key=0" in x and "malformed=0" in x and "with_text=10" in x for x in done)
    reports = [u for u in NodeState(cfg.node.state_dir).uploads() if "/reports/" in u["uri"]]
    assert len(reports) == 2
    assert all(u["lines"]["lines"] == 10 and u["lines"]["missing_key"] == 0 for u in reports)


def test_local_input_and_output_directories_have_the_s3_layout(node_root: Path) -> None:
    from fakes.jobrun_world import reference_dir, shard_names

    inputs = node_root / "data"
    truth = {}
    for i, rel in enumerate(shard_names(6)):
        (inputs / rel).parent.mkdir(parents=True, exist_ok=True)
        contaminated = i % 2 == 0
        (inputs / rel).write_bytes(shard_bytes(rel, i, 10, contaminated))
        truth[rel] = contaminated
    out = node_root / "nas"
    sections = job_sections(node_root, detect={"purify": True})
    sections.update(
        input={"uri": str(inputs)},
        output={"uri": str(out)},
        reference={"uri": str(reference_dir(node_root))},
    )
    cfg = make_config(node_root, **sections)
    assert run_inline(cfg) == EXIT_DONE
    reports = out / "test-job" / "reports"
    for rel, contaminated in truth.items():
        base = basename(rel)
        assert (reports / f"{base}.report.jsonl").exists() == contaminated
        assert (reports / f"{base}.clean").exists() != contaminated
        cleaned = list((out / "test-job" / "cleaned").glob(f"{base}.clean.jsonl*"))
        assert len(cleaned) == contaminated
    beat = out / "test-job" / "runs" / NodeState(cfg.node.state_dir).run_id() / "heartbeat.json"
    assert HeartbeatRecord.from_json(beat.read_bytes()).state == "done"
    # the cleaned copy of a file is published before its report (the "done" signal)
    order = [u["uri"] for u in NodeState(cfg.node.state_dir).uploads()]
    for rel, contaminated in truth.items():
        if contaminated:
            base = basename(rel)
            i_cleaned = next(i for i, u in enumerate(order) if f"cleaned/{base}.clean" in u)
            assert i_cleaned < order.index(str(reports / f"{base}.report.jsonl"))
    # a rerun finds every file done in the local reports directory
    assert run_inline(cfg) == EXIT_DONE
    assert f"already_done={len(truth)} todo=0" in Path(cfg.node.log_file).read_text()
