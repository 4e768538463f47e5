"""The finalizer of SPEC section 8 against a real moto server (real boto3 over HTTP)."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import make_config
from decon.config import Config, config_to_dict
from decon.errors import UserError
from decon.eventlog import EventLog, iso_utc
from decon.node.finalizer import (
    FinalizeRequest,
    RunOutcome,
    export_journal,
    finalize_run,
    resolve_outcome,
)
from decon.node.state import NodeState, Outcome, SpotNotice
from fakes.iam import stop_enforcing_iam, user_with_policy

BUCKET = "bkt"
INSTANCE = "i-0abc123"
SPEC_FIELDS = {
    "run_id", "job_id", "instance_id", "host_index", "host_count", "finalized_at", "status",
    "completion_status", "exit_code", "reason", "files", "artifacts",
}  # fmt: skip
JOB_UPLOAD = ("s3://bkt/out/test-job/reports/a.report.jsonl", 12, "ab" * 32)


@dataclass
class FakeTime:
    """Injected clock and sleep: sleeping records the wait and moves the clock."""

    now: dt.datetime = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)
    waits: list[float] = field(default_factory=list)

    def clock(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Node:
    cfg: Config
    state: NodeState
    run_id: str
    root: Path
    poweroff_log: Path

    @property
    def prefix(self) -> str:
        return f"out/test-job/runs/{self.run_id}/"

    def keys(self, s3) -> list[str]:
        listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
        return sorted(o["Key"][len(self.prefix) :] for o in listing.get("Contents", []))

    def body(self, s3, name: str) -> bytes:
        return s3.client().get_object(Bucket=BUCKET, Key=self.prefix + name)["Body"].read()

    def sentinel(self, s3, name: str = "_SUCCESS") -> dict:
        return json.loads(self.body(s3, name))

    def poweroffs(self) -> list[str]:
        return self.poweroff_log.read_text().splitlines() if self.poweroff_log.exists() else []

    def log_text(self) -> str:
        return Path(self.cfg.node.log_file).read_text()

    def hook(self, event: str, name: str, body: str) -> None:
        folder = Path(self.cfg.node.hooks_dir) / f"{event}.d"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("#!/bin/sh\n" + body)
        (folder / name).chmod(0o755)


def poweroff_stub(path: Path, record: Path, state_dir: str) -> Path:
    """A poweroff command that records, when called, which sentinels exist in S3."""
    path.write_text(
        f"""#!{sys.executable}
import os, boto3
run_id = open({str(Path(state_dir) / "run-id")!r}).read().strip()
client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
def has(name):
    try:
        client.head_object(Bucket={BUCKET!r}, Key=f"out/test-job/runs/{{run_id}}/{{name}}")
        return "yes"
    except Exception:
        return "no"
with open({str(record)!r}, "a") as fh:
    fh.write(f"poweroff success={{has('_SUCCESS')}} failed={{has('_FAILED_UPLOAD')}}\\n")
"""
    )
    path.chmod(0o755)
    return path


def make_node(root: Path, s3, *, endpoint: str | None = None, **node) -> Node:
    s3.client().create_bucket(Bucket=BUCKET)
    record = root / "poweroff.calls"
    stub = poweroff_stub(root / "poweroff-stub", record, str(root / "var/lib/decon"))
    node = {"poweroff_command": [str(stub)], "instance_id": INSTANCE, **node}
    cfg = make_config(
        root,
        job={"id": "test-job", "host_index": 1, "host_count": 4},
        output={"uri": f"s3://{BUCKET}/out"},
        aws={"endpoint_url": endpoint or s3.endpoint},
        node=node,
    )
    state = NodeState(cfg.node.state_dir)
    run_id = state.start_run(INSTANCE)
    (state.outbox / "reports").mkdir(parents=True)
    (state.outbox / "reports" / "b.report.jsonl").write_text('{"eval_key": "x"}\n')
    (state.outbox / "notes.txt").write_text("partial work\n")
    state.write_outcome(Outcome.from_exit(0))
    state.write_progress({"assigned": 5, "done": 4, "contaminated": 2, "failed": 1})
    state.record_upload(*JOB_UPLOAD)
    return Node(cfg, state, run_id, root, record)


def fake_journal(unit: str, dest: Path) -> str | None:
    dest.write_text(json.dumps({"_SYSTEMD_UNIT": f"{unit}.service", "MESSAGE": "hi"}) + "\n")
    return None


def finalize(node: Node, request: FinalizeRequest | None = None, time: FakeTime | None = None):
    time = time or FakeTime()
    log = EventLog(node.cfg.node.log_file, io.StringIO())
    result = finalize_run(
        node.cfg,
        request or FinalizeRequest(),
        log=log,
        sleep=time.sleep,
        clock=time.clock,
        journal=fake_journal,
    )
    return result, time


def states(text: str) -> list[str]:
    return [line.split("STATE: ")[1].split()[0] for line in text.splitlines() if "STATE: " in line]


# --- steps 2-5 on a healthy store ------------------------------------------------------------


def test_normal_run_uploads_everything_then_sentinel_then_powers_off(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint)  # a recording proxy
    env_dump = "env | grep -E '^(DECON_|COMPLETION_STATUS|EXIT_CODE|SPOT_|FINALIZE_)' | sort"
    node.hook("pre-finalize", "10-facts", f"{env_dump} > {node_root}/pre.env\n")
    node.hook("post-finalize", "10-facts", f"{env_dump} > {node_root}/post.env\n")

    result, time = finalize(node)

    assert result.status == "success" and result.exit_code == 0 and result.powered_off
    assert time.waits == []
    assert node.keys(s3) == [
        "_SUCCESS", "decon-run.log", "journal.jsonl", "manifest.json", "notes.txt",
        "reports/b.report.jsonl",
    ]  # fmt: skip
    puts = [r.path for r in faulty_proxy.requests if r.method == "PUT"]
    assert puts[-2].endswith("/_SUCCESS")  # step 4: the sentinel is the last required write
    assert puts[-1].endswith("/decon-run.log")  # then, best effort, the complete log
    assert [p for p in puts if p.endswith("/decon-run.log")] == [puts[-1]] * 2

    sentinel = node.sentinel(s3)
    assert set(sentinel) == SPEC_FIELDS
    base = f"s3://{BUCKET}/{node.prefix}"
    assert sentinel == {
        "run_id": node.run_id,
        "job_id": "test-job",
        "instance_id": INSTANCE,
        "host_index": 1,
        "host_count": 4,
        "finalized_at": iso_utc(time.now),
        "status": "success",
        "completion_status": "normal",
        "exit_code": 0,
        "reason": "job exited 0",
        "files": {"assigned": 5, "done": 4, "contaminated": 2, "failed": 1},
        "artifacts": [
            base + "notes.txt",
            base + "reports/b.report.jsonl",
            base + "journal.jsonl",
            base + "decon-run.log",
            base + "manifest.json",
        ],
    }

    manifest = json.loads(node.body(s3, "manifest.json"))
    assert manifest["run_id"] == node.run_id
    objects = {o["uri"]: o for o in manifest["objects"]}
    assert objects[JOB_UPLOAD[0]] == dict(zip(("uri", "size", "sha256"), JOB_UPLOAD, strict=True))
    for uri in sentinel["artifacts"][:-2]:  # every uploaded artifact, hashed as stored
        data = node.body(s3, uri[len(base) :])
        assert objects[uri] == {
            "uri": uri,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert len(objects) == 5

    # The log as listed is the one uploaded before the sentinel; the object now is the complete
    # log, which starts with exactly those bytes.
    listed = objects[base + "decon-run.log"]
    assert listed["version"] == "before-sentinel"
    final_log = node.body(s3, "decon-run.log")
    assert len(final_log) > listed["size"]
    assert hashlib.sha256(final_log[: listed["size"]]).hexdigest() == listed["sha256"]
    uploaded_log = final_log.decode()
    assert "STATE: FINALIZE_START" in uploaded_log
    assert "STATE: FINALIZE_SUCCESS" not in uploaded_log[: listed["size"]]
    final_states = states(uploaded_log)
    assert final_states[-1] == "TERMINATING" and "FINALIZE_SUCCESS" in final_states
    local = node.log_text().splitlines(keepends=True)
    assert uploaded_log == "".join(local[:-1])  # all but the line about this very upload
    assert json.loads(node.body(s3, "journal.jsonl"))["_SYSTEMD_UNIT"] == "decon.service"

    seen = states(node.log_text())
    assert seen.index("FINALIZE_START") < seen.index("UPLOAD_SUCCESS")
    assert seen.index("FINALIZE_SUCCESS") < seen.index("TERMINATING")
    assert seen[-1] == "FINAL_LOG_UPLOADED"
    assert seen.count("UPLOAD_SUCCESS") == 6 and "UPLOAD_FAIL" not in seen
    assert "completion_status=normal exit_code=0" in node.log_text()

    facts = (node_root / "pre.env").read_text()
    assert f"DECON_RUN_ID={node.run_id}\n" in facts
    assert "DECON_EVENT=pre-finalize\nDECON_JOB_ID=test-job\n" in facts
    assert "COMPLETION_STATUS=normal\n" in facts and "EXIT_CODE=0\n" in facts
    assert "FINALIZE_STATUS=success" in (node_root / "post.env").read_text()


def test_uploaded_log_holds_only_this_run_when_the_log_file_outlives_runs(node_root, s3):
    """A stopped spot instance started again: the same log file, an interrupted earlier run,
    then the wrapper's RUN_SELECTED of a new run. runs/{RUN_ID}/decon-run.log starts there."""
    node = make_node(node_root, s3)
    old_run = "run-20261123-100000Z-" + INSTANCE
    log = EventLog(node.cfg.node.log_file, io.StringIO())
    log.event("RUN_SELECTED", run_id=old_run, action="new", why="no run on this node yet")
    log.event("JOB_PLAN", already_done=0, todo=4)
    log.event("FINALIZE_SUCCESS", run_id=old_run)
    log.event("WATCH_START", run_id=old_run)  # the watcher of the next boot, before the wrapper
    log.event("RUN_SELECTED", run_id=node.run_id, action="new", why="previous run interrupted")
    log.event("JOB_PLAN", already_done=3, todo=1)
    log.event("RUN_SELECTED", run_id=node.run_id, action="resume", why="restarted mid-run")

    result, _ = finalize(node)

    assert result.status == "success"
    uploaded = node.body(s3, "decon-run.log").decode()
    assert uploaded.startswith("[UTC ") and old_run not in uploaded
    first = uploaded.splitlines()[0]
    assert f"STATE: RUN_SELECTED run_id={node.run_id} action=new" in first
    assert [line for line in uploaded.splitlines() if "JOB_PLAN" in line] == [
        line for line in node.log_text().splitlines() if "todo=1" in line
    ]
    assert states(uploaded)[-1] == "TERMINATING"
    assert old_run in node.log_text()  # the local file keeps everything


def test_log_without_a_run_selected_line_is_uploaded_whole(node_root, s3):
    node = make_node(node_root, s3)
    EventLog(node.cfg.node.log_file, io.StringIO()).line("written before any wrapper ran")

    finalize(node)

    assert node.body(s3, "decon-run.log").decode().startswith(node.log_text().splitlines()[0])
    assert node.poweroffs() == ["poweroff success=yes failed=no"]  # once, after the sentinel


def test_second_run_is_a_logged_noop(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint)
    node.hook("pre-finalize", "10-count", f"echo pre >> {node_root}/hooks.calls\n")
    finalize(node)
    first = node.sentinel(s3)
    puts_before = len([r for r in faulty_proxy.requests if r.method == "PUT"])

    result, _ = finalize(node)

    assert result.status == "skipped" and result.exit_code == 0 and not result.powered_off
    assert len([r for r in faulty_proxy.requests if r.method == "PUT"]) == puts_before
    assert node.sentinel(s3) == first
    assert node.poweroffs() == ["poweroff success=yes failed=no"]
    assert (node_root / "hooks.calls").read_text() == "pre\n"
    assert states(node.log_text())[-1] == "FINALIZE_SKIPPED"


def test_lost_race_on_the_conditional_write_keeps_the_other_sentinel(node_root, s3):
    node = make_node(node_root, s3)
    key = node.prefix + "_SUCCESS"
    # Another finalizer (e.g. with a different lock file) writes _SUCCESS after our check.
    node.hook(
        "pre-finalize",
        "10-race",
        f"""{sys.executable} -c 'import boto3, os
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1").put_object(
    Bucket="{BUCKET}", Key="{key}", Body=b"{{\\"winner\\": \\"other\\"}}")'
""",
    )
    result, _ = finalize(node)
    assert result.status == "success"
    assert node.sentinel(s3) == {"winner": "other"}
    assert "already written by another finalizer (412)" in node.log_text()
    assert "STATE: FINALIZE_SUCCESS" in node.log_text() and "written=False" in node.log_text()
    assert node.poweroffs() == ["poweroff success=yes failed=no"]


# --- step 1: two finalizers as real processes ----------------------------------------------------


def write_config_file(node: Node) -> Path:
    path = Path(node.cfg.node.config_path)
    path.write_text(yaml.safe_dump(config_to_dict(node.cfg)))
    return path


def finalizer_command() -> list[str]:
    return [str(Path(sys.executable).with_name("decon-finalize"))]


def test_two_concurrent_finalizer_processes_write_one_sentinel_and_power_off_once(node_root, s3):
    node = make_node(node_root, s3)
    node.hook("pre-finalize", "10-slow", "sleep 2\n")  # hold the lock while the other starts
    config = write_config_file(node)
    procs = [
        subprocess.Popen(
            [*finalizer_command(), "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    log = node.log_text()
    assert "another finalizer is running" in log  # they really overlapped
    assert states(log).count("FINALIZE_SUCCESS") == 1
    assert states(log).count("FINALIZE_SKIPPED") == 1
    assert states(log).count("TERMINATING") == 1
    assert node.poweroffs() == ["poweroff success=yes failed=no"]
    assert node.sentinel(s3)["run_id"] == node.run_id
    assert "STATE: FINALIZE_SKIPPED" in "".join(out for out, _ in outputs)  # stdout = journal


# --- step 3: backoff -----------------------------------------------------------------------------


def test_transient_faults_are_recovered_by_backoff(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint)
    faulty_proxy.fail("503", key_contains="/notes.txt", times=2)
    faulty_proxy.fail("500", key_contains="/manifest.json", times=1)
    faulty_proxy.fail("reset", key_contains="/decon-run.log", times=1)
    faulty_proxy.fail("503", key_contains="/_SUCCESS", times=1)

    result, time = finalize(node)

    assert result.status == "success", result.error
    assert time.waits == [1, 2, 1, 1, 1]  # per artifact: 2 faults on notes.txt, 1 on the others
    assert [r.fault for r in faulty_proxy.faults()] == ["503", "503", "reset", "500", "503"]
    assert states(node.log_text()).count("UPLOAD_FAIL") == 5
    assert "transient=True" in node.log_text()
    assert node.sentinel(s3)["status"] == "success"
    assert node.poweroffs() == ["poweroff success=yes failed=no"]


def denied_user(s3, monkeypatch) -> None:
    """Credentials that may read and write _FAILED_UPLOAD but PUT nothing else (IAM mode)."""
    creds = user_with_policy(
        s3,
        "node-role",
        [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket", "s3:DeleteObject"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::*/_FAILED_UPLOAD",
            },
        ],
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"])
    s3.enforce_iam()


def test_persistent_access_denied_gives_failed_upload_after_full_schedule(
    node_root, s3, monkeypatch
):
    node = make_node(node_root, s3, on_upload_failure="poweroff")
    denied_user(s3, monkeypatch)

    result, time = finalize(node)

    assert time.waits == [1, 2, 4, 8, 16, 32]
    assert result.status == "failed_upload" and result.exit_code == 1
    fails = [line for line in node.log_text().splitlines() if "STATE: UPLOAD_FAIL" in line]
    assert len(fails) == 7 and all("AccessDenied" in line for line in fails)
    assert "transient=False" in fails[0]
    assert node.poweroffs() == ["poweroff success=no failed=yes"]  # seen with the node's keys
    stop_enforcing_iam(s3)
    failed = node.sentinel(s3, "_FAILED_UPLOAD")
    assert set(failed) == SPEC_FIELDS | {"last_error"}
    assert failed["status"] == "failed_upload" and failed["completion_status"] == "normal"
    assert "gave up after 7 attempts" in failed["last_error"]
    assert "access denied (AccessDenied)" in failed["last_error"]
    assert "_SUCCESS" not in node.keys(s3)
    seen = states(node.log_text())
    assert seen.index("FINALIZE_FAILED") < seen.index("TERMINATING")
    assert "FINALIZE_KEEP" not in seen


def test_a_failed_last_log_upload_changes_nothing(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint)
    faulty_proxy.fail("500", key_contains="/decon-run.log", every=2, times=-1)  # the 2nd PUT

    result, time = finalize(node)

    assert result.status == "success" and result.exit_code == 0 and result.powered_off
    assert time.waits == []
    assert node.poweroffs() == ["poweroff success=yes failed=no"]
    assert node.sentinel(s3)["status"] == "success"
    assert [r.fault for r in faulty_proxy.requests if r.path.endswith("/decon-run.log")] == [
        None,
        "500",
    ]  # one try, no retries
    seen = states(node.log_text())
    assert seen[-2:] == ["TERMINATING", "FINAL_LOG_UPLOAD_FAILED"]
    assert "effect=none" in node.log_text().splitlines()[-1]
    stored = node.body(s3, "decon-run.log")  # the before-sentinel copy, as the manifest lists
    listed = {o["uri"]: o for o in json.loads(node.body(s3, "manifest.json"))["objects"]}
    entry = next(o for uri, o in listed.items() if uri.endswith("/decon-run.log"))
    assert hashlib.sha256(stored).hexdigest() == entry["sha256"]


def test_after_failed_upload_the_log_goes_up_with_its_last_lines(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint, on_upload_failure="poweroff")
    faulty_proxy.fail("503", key_contains="/notes.txt", times=-1)

    result, _ = finalize(node)

    assert result.status == "failed_upload" and result.exit_code == 1
    assert node.keys(s3) == ["_FAILED_UPLOAD", "decon-run.log"]
    puts = [r.path for r in faulty_proxy.requests if r.method == "PUT" and r.fault is None]
    assert puts[-2].endswith("/_FAILED_UPLOAD") and puts[-1].endswith("/decon-run.log")
    uploaded = node.body(s3, "decon-run.log").decode()
    assert states(uploaded)[-2:] == ["FINALIZE_FAILED", "TERMINATING"]
    assert node.poweroffs() == ["poweroff success=no failed=yes"]


def test_no_poweroff_still_uploads_the_complete_log(node_root, s3):
    node = make_node(node_root, s3)
    result, _ = finalize(node, FinalizeRequest(poweroff=False))
    assert result.status == "success" and not result.powered_off
    assert states(node.body(s3, "decon-run.log").decode())[-1] == "POWEROFF_SKIPPED"
    assert node.poweroffs() == []


@pytest.mark.parametrize("source", ["flag", "spot-notice"])
def test_deadline_cuts_the_schedule(node_root, s3, faulty_proxy, source):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint, on_upload_failure="keep")
    faulty_proxy.fail("503", key_contains="/notes.txt", times=-1)
    time = FakeTime()
    request = FinalizeRequest()
    if source == "flag":
        request.deadline = time.now + dt.timedelta(seconds=10)
    else:  # notice in 25 s, minus the default 15 s margin
        notice_time = iso_utc(time.now + dt.timedelta(seconds=25))
        node.state.write_notice(SpotNotice("terminate", notice_time))

    result, _ = finalize(node, request, time)

    # 1+2+4 = 7 s; the next 8 s wait would pass the deadline at 10 s. The keep policy then
    # waits only up to the deadline (3 s) before powering off.
    assert time.waits == [1, 2, 4, 3]
    assert result.status == "failed_upload"
    failed = node.sentinel(s3, "_FAILED_UPLOAD")
    assert "gave up after the deadline" in failed["last_error"]
    assert "SlowDown" in failed["last_error"]
    if source == "spot-notice":
        assert failed["reason"] == f"job exited 0; spot terminate notice for {notice_time}"
    assert node.poweroffs() == ["poweroff success=no failed=yes"]


# --- step 4: failure policy and the operator's rerun ----------------------------------------------


def test_manual_rerun_after_failure_succeeds_and_removes_failed_upload(node_root, s3, faulty_proxy):
    node = make_node(node_root, s3, endpoint=faulty_proxy.endpoint)
    faulty_proxy.fail("503", key_contains="/manifest.json", times=-1)
    first, time = finalize(node, FinalizeRequest(poweroff=False))
    assert first.status == "failed_upload" and time.waits == [1, 2, 4, 8, 16, 32]
    assert "_FAILED_UPLOAD" in node.keys(s3) and "_SUCCESS" not in node.keys(s3)
    assert node.poweroffs() == [] and "POWEROFF_SKIPPED" in states(node.log_text())

    faulty_proxy.clear()  # the operator fixed the cause
    second, _ = finalize(node, FinalizeRequest(poweroff=False))

    assert second.status == "success"
    assert "_FAILED_UPLOAD" not in node.keys(s3)
    assert node.sentinel(s3)["status"] == "success"
    assert states(node.log_text()).count("FINALIZE_SUCCESS") == 1


def test_keep_policy_waits_with_the_lock_released_then_powers_off(node_root, s3, faulty_proxy):
    node = make_node(
        node_root, s3, endpoint=faulty_proxy.endpoint, on_upload_failure="keep", keep_seconds=25
    )
    faulty_proxy.fail("503", key_contains="/manifest.json", times=-1)
    during_keep: list[bool] = []

    class KeepTime(FakeTime):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.waits) <= 6:  # the upload backoff
                return
            fd = os.open(node.cfg.node.lock_file, os.O_RDWR)
            try:  # the lock is free while the node is kept
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                during_keep.append(not node.poweroffs())
            finally:
                os.close(fd)

    time = KeepTime()
    result, _ = finalize(node, time=time)

    assert time.waits == [1, 2, 4, 8, 16, 32, 10, 10, 5]  # keep_seconds in checked slices
    assert during_keep == [True, True, True]
    assert result.status == "failed_upload" and result.powered_off
    seen = states(node.log_text())
    assert seen.index("FINALIZE_FAILED") < seen.index("FINALIZE_KEEP") < seen.index("TERMINATING")
    assert "FINALIZE_KEEP_ENDED" not in seen
    assert "poweroff_at=2026-11-23T14:01:28Z" in node.log_text()  # 63 s of waits + 25 s
    assert node.poweroffs() == ["poweroff success=no failed=yes"]


def test_keep_ends_early_when_an_operator_rerun_writes_success(node_root, s3, faulty_proxy):
    node = make_node(
        node_root, s3, endpoint=faulty_proxy.endpoint, on_upload_failure="keep", keep_seconds=120
    )
    faulty_proxy.fail("503", key_contains="/manifest.json", times=-1)
    reruns: list[str] = []

    class KeepTime(FakeTime):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.waits) == 7:  # the first keep slice: the operator fixes it and reruns
                faulty_proxy.clear()
                rerun, _ = finalize(node, FinalizeRequest(poweroff=False))
                reruns.append(rerun.status)

    time = KeepTime()
    result, _ = finalize(node, time=time)

    assert reruns == ["success"]
    assert time.waits == [1, 2, 4, 8, 16, 32, 10]  # not the whole 120 s
    seen = states(node.log_text())
    assert seen.index("FINALIZE_KEEP") < seen.index("FINALIZE_SUCCESS")
    assert seen.index("FINALIZE_SUCCESS") < seen.index("FINALIZE_KEEP_ENDED")
    assert seen.index("FINALIZE_KEEP_ENDED") < seen.index("TERMINATING")
    assert result.status == "failed_upload" and result.powered_off
    assert "_FAILED_UPLOAD" not in node.keys(s3) and node.sentinel(s3)["status"] == "success"


# --- outcome, dry run, errors ---------------------------------------------------------------


def test_outcome_from_flags_record_or_manual_default():
    recorded = Outcome.from_exit(143)
    notice = SpotNotice("stop", "2026-11-23T14:30:00Z")
    assert resolve_outcome(FinalizeRequest(), recorded, None) == RunOutcome(
        "interrupted", 143, "job exited 143"
    )
    assert resolve_outcome(FinalizeRequest(), None, None) == RunOutcome(
        "interrupted", None, "manual finalize: no job outcome recorded"
    )
    assert resolve_outcome(FinalizeRequest(exit_code=0), recorded, None) == RunOutcome(
        "normal", 0, "job exited 0"
    )
    assert resolve_outcome(FinalizeRequest(status="normal"), recorded, notice) == RunOutcome(
        "normal",
        143,
        "job exited 143; status normal set by operator; spot stop notice for 2026-11-23T14:30:00Z",
    )
    assert resolve_outcome(FinalizeRequest(reason="operator"), None, None).reason == "operator"


def test_manual_finalize_without_outcome_is_interrupted(node_root, s3):
    node = make_node(node_root, s3)
    (node.state.dir / "outcome.json").unlink()
    finalize(node)
    sentinel = node.sentinel(s3)
    assert sentinel["completion_status"] == "interrupted" and sentinel["exit_code"] is None
    assert sentinel["reason"] == "manual finalize: no job outcome recorded"


def test_no_run_id_is_a_clear_error(node_root, s3):
    node = make_node(node_root, s3)
    node.state.run_id_file.unlink()
    with pytest.raises(UserError, match="no run id: no job has started on this node"):
        finalize(node)
    assert node.poweroffs() == []


def test_dry_run_changes_nothing(node_root, s3):
    node = make_node(node_root, s3)
    out = subprocess.run(
        [*finalizer_command(), "--config", str(write_config_file(node)), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert node.keys(s3) == []
    assert not Path(node.cfg.node.log_file).exists()
    assert not Path(node.cfg.node.lock_file).exists()
    assert node.poweroffs() == []
    target = f"s3://{BUCKET}/{node.prefix}notes.txt"
    assert f"would upload {node.state.outbox}/notes.txt -> {target}" in out.stdout
    assert f"would write s3://{BUCKET}/{node.prefix}_SUCCESS" in out.stdout


def test_cli_flags_reach_the_sentinel(node_root, s3):
    node = make_node(node_root, s3)
    out = subprocess.run(
        [
            *finalizer_command(),
            "--config",
            str(write_config_file(node)),
            "--exit-code",
            "143",
            "--reason",
            "job killed by SIGTERM",
            "--no-poweroff",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    sentinel = node.sentinel(s3)
    assert (sentinel["completion_status"], sentinel["exit_code"]) == ("interrupted", 143)
    assert sentinel["reason"] == "job killed by SIGTERM"
    assert node.poweroffs() == []
    assert "STATE: FINALIZE_SUCCESS" in out.stdout


@pytest.mark.parametrize(
    ("content", "args", "expect"),
    [
        (None, [], "cannot read config"),
        ("node: [unclosed", [], "invalid YAML"),
        ("node:\n  no_such_key: 1\n", [], "node.no_such_key: unknown key"),
        ("output:\n  uri: s3://bkt/out\n", [], "no run id"),
        ("{}\n", ["--deadline", "soon"], "not an ISO 8601 time"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, content, args, expect):
    config = tmp_path / "config.yaml"
    if content is not None:
        config.write_text(
            content
            + (
                f"\nnode: {{state_dir: {tmp_path}/state, log_file: {tmp_path}/log}}\n"
                if "output" in content
                else ""
            )
        )
    out = subprocess.run(
        [*finalizer_command(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert expect in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# --- journal export ------------------------------------------------------------------------------


def test_journal_export_runs_journalctl_and_skips_gracefully(tmp_path):
    fake = tmp_path / "journalctl"
    fake.write_text('#!/bin/sh\necho "{\\"args\\": \\"$*\\"}"\n')
    fake.chmod(0o755)
    dest = tmp_path / "journal.jsonl"
    assert export_journal("decon", dest, command=[str(fake)]) is None
    assert json.loads(dest.read_text()) == {"args": "-u decon -o json --no-pager"}

    assert export_journal("decon", dest, command=[str(tmp_path / "absent")]).endswith("not found")
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'No journal files were found.' >&2\nexit 1\n")
    failing.chmod(0o755)
    reason = export_journal("decon", dest, command=[str(failing)])
    assert reason == f"{failing} exited 1: No journal files were found."


def test_finalize_without_journal_still_succeeds(node_root, s3):
    node = make_node(node_root, s3)
    log = EventLog(node.cfg.node.log_file, io.StringIO())
    result = finalize_run(
        node.cfg, FinalizeRequest(), log=log, journal=lambda unit, dest: "journalctl not found"
    )
    assert result.status == "success"
    assert "journal.jsonl" not in node.keys(s3)
    assert "journal export skipped: journalctl not found" in node.log_text()
