"""The product in a real VM: cloud-init, systemd, IMDSv2 at 169.254.169.254, S3 on the host.

Run with `make e2e` (never by `make test`). One VM at a time; each boot is ~30 s to ssh under TCG.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import ARTIFACTS, S3_URL_IN_GUEST, BootVm, Vm, check_user_data_schema
from probe import DONE_FILE, PROBE_KEY_PREFIX, RELEASE_FILE, probe_user_data
from scenario import (
    BUCKET,
    JOB_ID,
    NODE_ROLE,
    SLOW_FILE,
    Observed,
    assert_reports_for_all,
    event_lines,
    guest_file_text,
    input_stem,
    job_config,
    keys,
    make_node_role,
    only_success,
    put_job_inputs,
    record_observation,
    set_node_policy,
    wait_for_guest_text,
    watch_decon_until_poweroff,
)

from decon.fleet.userdata import render_user_data
from fakes.imds import FakeCredentials, FakeImds, iso
from fakes.moto_s3 import MotoServer

Figures = dict[str, dict[str, float]]
POWEROFF_CALLS = "/var/lib/decon/poweroff.calls"
RUN_LOG = "/var/log/decon-run.log"
# ssh-ready to job end: cloud-init's pip install alone took 15+ min on a busy 2-core host.
GUEST_RUN_TIMEOUT = 2400
FINALIZE = "/opt/decon/bin/decon-finalize"
SPOT_WARNING_SECONDS = 120  # AWS's two-minute warning
KEEP_SECONDS = 900  # the bounded keep time of scenario 3 (node.keep_seconds)
STILL_UP_SECONDS = 60  # how long scenario 3 watches the kept node before the rerun


def test_harness_probe_installs_agent_reads_imds_writes_s3_and_powers_off(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer
) -> None:
    """Proves every path the scenarios rely on, with a placeholder #cloud-config."""
    s3.client().create_bucket(Bucket=BUCKET)
    user_data = probe_user_data(BUCKET)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "probe")
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    vm.wait_for_guest_file(DONE_FILE, timeout=GUEST_RUN_TIMEOUT)

    help_text = vm.ssh("/opt/decon/bin/decon --help").stdout
    assert help_text.startswith("usage: decon"), help_text
    schema = vm.ssh("cloud-init schema --system", check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "Valid cloud-config" in schema.stdout + schema.stderr
    assert "Active: active (running)" in vm.systemctl_status("ssh")
    assert "running 'modules:final'" in vm.journal("cloud-final")
    probe_log = vm.ssh("cat /var/log/decon-e2e-probe.log").stdout
    instance_id = imds.metadata["instance-id"]
    assert f"wrote {instance_id}" in probe_log, probe_log

    key = f"{PROBE_KEY_PREFIX}{instance_id}.json"
    body = json.loads(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["instance_id"] == instance_id
    assert body["credential_method"] == "iam-role"  # boto3's chain found IMDS, not env or files
    assert body["access_key"] == imds.credentials.access_key_id
    assert body["endpoint"] == S3_URL_IN_GUEST
    assert body["decon_help"].startswith("usage: decon")
    assert imds.count("PUT", "/latest/api/token")
    assert imds.count("GET", "/latest/meta-data/instance-id")
    assert imds.count("GET", f"/latest/meta-data/iam/security-credentials/{imds.credentials.role}")

    vm.ssh(f"touch {RELEASE_FILE}")
    vm.wait_for_poweroff(timeout=300)  # cloud-init's power_state, not the harness
    assert vm.powered_off_at is not None


# --- The node's scenarios ------------------------------------------------------------------------
#
# Common wiring (tests/e2e/scenario.py): a planted corpus (decon_synth.plant.make_corpus) and its
# reference put in the moto S3; the job config (input/output/reference on S3, aws.endpoint_url =
# S3_URL_IN_GUEST, install from the wheelhouse with --no-index) rendered by the real
# `render_user_data` and checked with `cloud-init schema` on the host before booting. Assertions
# read S3 with the host's boto3 and the guest's `systemctl status decon` / `journalctl -u decon`
# over ssh while it runs; what the guest printed is saved to build/e2e/<scenario>.observed.txt.


def test_normal_run_uploads_reports_success_and_powers_off(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """Scenario 1: the real user-data; the agent runs, finalizes and powers the guest off."""
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path)
    cfg = job_config()
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "normal")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    seen = watch_decon_until_poweroff(vm, timeout=GUEST_RUN_TIMEOUT)
    seconds = round(time.monotonic() - started, 1)
    figures["scenario:normal"] = {"boot_to_poweroff": seconds}
    record_observation("normal", seconds, seen)

    assert vm.powered_off_at is not None
    assert seen.statuses, "never saw `systemctl status decon` while the job ran"
    assert any("decon-wrapper" in s for s in seen.statuses), seen.statuses[-1]
    assert "JOB_START" in seen.journal or "FILE_DONE" in seen.journal, seen.journal
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "normal", sentinel
    assert_reports_for_all(client, inputs)
    run_keys = keys(client, BUCKET, f"out/{JOB_ID}/runs/{run_id}/")
    names = {k.rsplit("/", 1)[1] for k in run_keys}
    assert {"_SUCCESS", "decon-run.log", "journal.jsonl"} <= names, sorted(run_keys)
    assert "reboot: Power down" in vm.console()
    # The planted question+answer documents are found: non-empty reports in S3.
    reports = {
        k: size
        for k, size in keys(client, BUCKET, f"out/{JOB_ID}/reports/").items()
        if k.endswith(".report.jsonl")
    }
    assert reports and all(size > 0 for size in reports.values()), reports
    assert sentinel["files"]["contaminated"] >= 1, sentinel
    first = read_text(client, sorted(reports)[0]).splitlines()
    assert first and all(json.loads(line) for line in first), first


def test_spot_interruption_mid_file_stops_uploads_finished_and_powers_off_in_time(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """Scenario 2: a spot notice (AWS's two minutes) arrives while the slow file is detected.

    The job stops between chunks, the finished files' outputs stay in S3, the slow file has no
    object at all, `_SUCCESS` says interrupted, and the guest is off before the notice's time.
    """
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, slow_file=True)
    # Small chunks: the job checks for a stop between chunks, so it stops within seconds.
    cfg = job_config(detect={"chunk_lines": 200, "prefilter": False})
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "spot")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    wait_for_guest_text(vm, RUN_LOG, f"FILE_START file={SLOW_FILE}", timeout=GUEST_RUN_TIMEOUT)
    in_progress_status = vm.systemctl_status()
    notice_at = (datetime.now(UTC) + timedelta(seconds=SPOT_WARNING_SECONDS)).replace(microsecond=0)
    imds.set_instance_action("terminate", iso(notice_at))
    vm.timings.mark("spot_notice_scheduled")
    seen = watch_decon_until_poweroff(vm, timeout=SPOT_WARNING_SECONDS + 60, poll=3)
    seen.statuses.insert(0, in_progress_status)
    seconds = round(time.monotonic() - started, 1)
    notice_to_off = vm.timings.marks["poweroff"] - vm.timings.marks["spot_notice_scheduled"]
    figures["scenario:spot"] = {"boot_to_poweroff": seconds, "notice_to_poweroff": notice_to_off}
    record_observation("spot", seconds, seen)

    assert vm.powered_off_at is not None and vm.powered_off_at < notice_at, (
        vm.powered_off_at,
        notice_at,
    )
    assert "reboot: Power down" in vm.console()
    assert imds.count("GET", "/latest/meta-data/spot/instance-action")
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "interrupted", sentinel
    assert "spot terminate notice" in sentinel["reason"], sentinel
    # The run log as uploaded: the slow file started before the notice and never finished.
    run_log = read_text(client, f"out/{JOB_ID}/runs/{run_id}/decon-run.log")
    order = [line.split(" STATE: ")[-1] for line in run_log.splitlines() if " STATE: " in line]
    start_at = index_of(order, f"FILE_START file={SLOW_FILE}")
    notice_seen = index_of(order, "SPOT_NOTICE action=terminate")
    assert start_at < notice_seen, order
    assert not event_lines(run_log, f"FILE_DONE file={SLOW_FILE}"), run_log
    assert event_lines(run_log, f"FILE_ABANDONED file={SLOW_FILE}"), run_log
    assert event_lines(run_log, "SIGNAL_FORWARDED signal=SIGTERM"), run_log
    finished = [i for i in inputs if i != SLOW_FILE]
    assert len(event_lines(run_log, "FILE_DONE")) == len(finished), run_log
    assert_reports_for_all(client, finished)  # finished outputs are in S3 ...
    outputs = keys(client, BUCKET, f"out/{JOB_ID}/")
    slow_stem = input_stem(SLOW_FILE)
    assert not [k for k in outputs if slow_stem in k], sorted(outputs)  # ... no partial object
    assert sentinel["files"]["done"] == len(finished), sentinel
    assert "STATE: SIGNAL_FORWARDED signal=SIGTERM" in seen.journal, seen.journal


def test_queue_mode_spot_notice_releases_the_file_and_another_node_finishes_it(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """Scenario 2 in queue mode (`run.distribution: queue`, SQS on the same moto server).

    The notice lands while the slow file is detected: the node releases that file's message at
    once (its visibility timeout is an hour), finalizes and powers off in time. A second node
    (`decon run` on the host) then takes the file from the queue and finishes it: every input
    has exactly one output and the queue is empty.
    """
    import subprocess
    import sys

    import yaml

    from decon.config import config_from_dict, config_to_dict
    from decon.jobrun.workqueue import fill_job_queue, queue_name

    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, slow_file=True)
    queue_settings = {"distribution": "queue", "visibility_timeout_seconds": 3600}
    cfg = job_config(detect={"chunk_lines": 200, "prefilter": False}, run=queue_settings)
    host = config_to_dict(cfg)
    host["aws"]["endpoint_url"] = s3.endpoint
    root = tmp_path / "host-node"
    host["node"].update(
        state_dir=str(root / "state"),
        log_file=str(root / "decon-run.log"),
        lock_file=str(root / "finalize.lock"),
        hooks_dir=str(root / "hooks"),
        instance_id="i-host0000000000001",
    )
    host["node"].pop("config_path")
    host_cfg = config_from_dict(host)
    fill = fill_job_queue(host_cfg)
    assert fill.enqueued == len(inputs), fill
    sqs = s3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name(JOB_ID))["QueueUrl"]

    def queue_counts() -> tuple[int, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return int(attrs[names[0]]), int(attrs[names[1]])

    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "spot-queue")
    started = time.monotonic()
    vm = boot_vm(user_data)
    vm.wait_for_ssh(timeout=300)
    wait_for_guest_text(vm, RUN_LOG, f"FILE_START file={SLOW_FILE}", timeout=GUEST_RUN_TIMEOUT)
    assert queue_counts()[1] >= 1  # the slow file is held by the node
    notice_at = (datetime.now(UTC) + timedelta(seconds=SPOT_WARNING_SECONDS)).replace(microsecond=0)
    imds.set_instance_action("terminate", iso(notice_at))
    vm.timings.mark("spot_notice_scheduled")
    seen = watch_decon_until_poweroff(vm, timeout=SPOT_WARNING_SECONDS + 60, poll=3)
    record_observation("spot-queue", round(time.monotonic() - started, 1), seen)
    assert vm.powered_off_at is not None and vm.powered_off_at < notice_at
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "interrupted", sentinel
    run_log = read_text(client, f"out/{JOB_ID}/runs/{run_id}/decon-run.log")
    assert event_lines(run_log, f"FILE_ABANDONED file={SLOW_FILE}"), run_log
    done_in_vm = {x.split(" file=")[1].split()[0] for x in event_lines(run_log, "FILE_DONE")}
    left = set(inputs) - done_in_vm
    assert SLOW_FILE in left
    # Released, not timed out: visible again although their visibility timeout is an hour.
    assert queue_counts() == (len(left), 0)

    job_file = root / "job.yaml"
    root.mkdir(parents=True, exist_ok=True)
    job_file.write_text(yaml.safe_dump(host))
    t0 = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "decon.cli", "run", "--config", str(job_file)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    host_log = (root / "decon-run.log").read_text()
    done_on_host = {x.split(" file=")[1].split()[0] for x in event_lines(host_log, "FILE_DONE")}
    assert done_on_host == left, host_log
    assert_reports_for_all(client, inputs)  # every input exactly once
    assert queue_counts() == (0, 0)
    figures["scenario:spot-queue"] = {
        "notice_to_poweroff": vm.timings.marks["poweroff"]
        - vm.timings.marks["spot_notice_scheduled"],
        "second_node_seconds": round(time.monotonic() - t0, 1),
    }


def test_upload_failure_keeps_instance_then_manual_finalize_succeeds(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """Scenario 3: the node role may not write the run's artifacts (moto IAM mode).

    The finalizer gives up after its 7 attempts, writes `_FAILED_UPLOAD` (allowed by the policy)
    and keeps the instance up for `keep_seconds`; the operator fixes the role's policy and runs
    `decon-finalize` over ssh, which writes `_SUCCESS`, removes `_FAILED_UPLOAD` and powers off.
    """
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, files=2)
    world = make_node_role(s3, runs_writable=False)
    imds.credentials = FakeCredentials(
        role=NODE_ROLE,
        access_key_id=world.node_credentials["access_key_id"],
        secret_access_key=world.node_credentials["secret_access_key"],
        token=world.node_credentials["session_token"],
    )
    s3.enforce_iam()
    admin = s3.client(**world.admin)
    cfg = job_config(keep_seconds=KEEP_SECONDS)
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "upload-failure")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    run_log = wait_for_guest_text(vm, RUN_LOG, "STATE: FINALIZE_KEEP", timeout=GUEST_RUN_TIMEOUT)
    kept_at = time.monotonic()
    failed = [
        k for k in keys(admin, BUCKET, f"out/{JOB_ID}/runs/") if k.endswith("/_FAILED_UPLOAD")
    ]
    assert len(failed) == 1, failed
    run_id = failed[0].split("/")[-2]
    body = json.loads(admin.get_object(Bucket=BUCKET, Key=failed[0])["Body"].read())
    assert body["status"] == "failed_upload" and body["completion_status"] == "normal", body
    assert "AccessDenied" in body["last_error"], body
    assert not [k for k in keys(admin, BUCKET, "out/") if k.endswith("/_SUCCESS")]
    assert_reports_for_all(admin, inputs)  # the job's own outputs were allowed
    assert len(event_lines(run_log, "UPLOAD_FAIL")) == 7, run_log  # one artifact, 7 attempts
    assert "AccessDenied" in event_lines(run_log, "UPLOAD_FAIL")[-1]
    keep = event_lines(run_log, "FINALIZE_KEEP")[0]
    assert f"keep_seconds={KEEP_SECONDS}" in keep, keep
    assert "failed_upload_sentinel=True" in event_lines(run_log, "FINALIZE_FAILED")[0], run_log
    # Still up a while into the keep period (it ends only at poweroff_at, KEEP_SECONDS later).
    time.sleep(max(0.0, STILL_UP_SECONDS - (time.monotonic() - kept_at)))
    assert vm.running(), vm.console_tail()
    status_kept = vm.systemctl_status()
    journal_kept = vm.journal()  # journald lags the run log under TCG: read it after the wait
    assert "STATE: TERMINATING" not in guest_file_text(vm, RUN_LOG)
    assert "STATE: FINALIZE_KEEP" in journal_kept, journal_kept
    assert "failed_upload_sentinel=True" in journal_kept, journal_kept
    assert "Active: active (running)" in status_kept, status_kept
    assert "finalizing" in status_kept, status_kept

    set_node_policy(s3.client("iam", **world.admin), runs_writable=True)  # access restored
    rerun = vm.ssh(f"{FINALIZE} 2>&1", check=False, timeout=600, attempts=1)
    rerun_done = time.monotonic()
    vm.wait_for_poweroff(timeout=300)
    seconds = round(time.monotonic() - started, 1)
    figures["scenario:upload_failure"] = {
        "boot_to_keep": round(kept_at - started, 1),
        "rerun_to_poweroff": round(time.monotonic() - rerun_done, 1),
        "boot_to_poweroff": seconds,
    }
    record_observation("upload_failure", seconds, Observed([status_kept], journal_kept))
    (ARTIFACTS / "upload_failure.rerun.txt").write_text(rerun.stdout + rerun.stderr)

    assert rerun.returncode in (0, 255), rerun.stdout + rerun.stderr  # 255: ssh cut by poweroff
    assert "STATE: FINALIZE_SUCCESS" in rerun.stdout, rerun.stdout
    assert "STATE: TERMINATING" in rerun.stdout, rerun.stdout
    sentinel = json.loads(
        admin.get_object(Bucket=BUCKET, Key=f"out/{JOB_ID}/runs/{run_id}/_SUCCESS")["Body"].read()
    )
    assert sentinel["status"] == "success" and sentinel["completion_status"] == "normal"
    names = {k.rsplit("/", 1)[1] for k in keys(admin, BUCKET, f"out/{JOB_ID}/runs/{run_id}/")}
    assert "_FAILED_UPLOAD" not in names, names
    assert {"_SUCCESS", "decon-run.log", "journal.jsonl", "manifest.json"} <= names, names
    assert vm.powered_off_at is not None and "reboot: Power down" in vm.console()


def test_finalize_twice_second_is_noop(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """Scenario 4: after a normal run, `decon-finalize` run by hand (twice) changes nothing.

    The node's poweroff command is a recorder so the guest stays up for the manual runs.
    """
    client = s3.client()
    put_job_inputs(client, tmp_path, files=2)
    cfg = job_config(poweroff_command=["/bin/sh", "-c", f"echo poweroff >> {POWEROFF_CALLS}"])
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "finalize-twice")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    vm.wait_for_guest_file(POWEROFF_CALLS, timeout=GUEST_RUN_TIMEOUT)
    status = wait_for_final_status(vm)
    # The wrapper's last STATUS= outlives it: how the run ended, not "finalizing ...".
    assert "Active: inactive (dead)" in status, status
    assert 'job normal (exit 0), finalized"' in status, status
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "normal", sentinel
    success_key = f"out/{JOB_ID}/runs/{run_id}/_SUCCESS"
    before = client.head_object(Bucket=BUCKET, Key=success_key)
    objects_before = keys(client, BUCKET, "out/")

    results = [vm.ssh("/opt/decon/bin/decon-finalize --no-poweroff", check=False) for _ in range(2)]

    seconds = round(time.monotonic() - started, 1)
    figures["scenario:finalize_twice"] = {"boot_to_checks": seconds}
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    run_log = vm.ssh("cat /var/log/decon-run.log").stdout
    assert run_log.count("FINALIZE_SKIPPED") == 2, run_log
    after = client.head_object(Bucket=BUCKET, Key=success_key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert keys(client, BUCKET, "out/") == objects_before
    assert vm.ssh(f"cat {POWEROFF_CALLS}").stdout.splitlines() == ["poweroff"]
    record_observation("finalize_twice", seconds, Observed([status], vm.journal()))
    vm.ssh("systemctl poweroff", check=False, attempts=1)
    vm.wait_for_poweroff(timeout=300)


def read_text(client: Any, key: str) -> str:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8", "replace")


def index_of(items: list[str], prefix: str) -> int:
    """Index of the first item starting with `prefix` (fails the test when there is none)."""
    for index, item in enumerate(items):
        if item.startswith(prefix):
            return index
    raise AssertionError(f"no {prefix!r} in {items}")


def wait_for_final_status(vm: Vm, timeout: float = 300) -> str:
    """`systemctl status decon` once the wrapper has exited and sent its final STATUS=."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = vm.systemctl_status()
        if 'Status: "finished run_id=' in status:
            return status
        time.sleep(3)
    raise AssertionError(f"no final status in {timeout:.0f}s:\n{status}")
