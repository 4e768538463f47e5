"""The product in a real VM: cloud-init, systemd, IMDSv2 at 169.254.169.254, S3 on the host.

Run with `make e2e` (never by `make test`). One VM at a time; each boot is ~30 s to ssh under TCG.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import ARTIFACTS, S3_URL_IN_GUEST, BootVm, check_user_data_schema
from imds_standin import ImdsStandin
from probe import DONE_FILE, PROBE_KEY_PREFIX, RELEASE_FILE, probe_user_data
from scenario import (
    BUCKET,
    JOB_ID,
    Observed,
    assert_reports_for_all,
    job_config,
    keys,
    only_success,
    put_job_inputs,
    record_observation,
    watch_decon_until_poweroff,
)

from decon.fleet.userdata import render_user_data
from fakes.moto_s3 import MotoServer

Figures = dict[str, dict[str, float]]
POWEROFF_CALLS = "/var/lib/decon/poweroff.calls"


def test_harness_probe_installs_agent_reads_imds_writes_s3_and_powers_off(
    boot_vm: BootVm, imds: ImdsStandin, s3: MotoServer
) -> None:
    """Proves every path the scenarios rely on, with a placeholder #cloud-config."""
    s3.client().create_bucket(Bucket=BUCKET)
    user_data = probe_user_data(BUCKET)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "probe")
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    vm.wait_for_guest_file(DONE_FILE, timeout=900)

    help_text = vm.ssh("/opt/decon/bin/decon --help").stdout
    assert help_text.startswith("usage: decon"), help_text
    schema = vm.ssh("cloud-init schema --system", check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "Valid cloud-config" in schema.stdout + schema.stderr
    assert "Active: active (running)" in vm.systemctl_status("ssh")
    assert "running 'modules:final'" in vm.journal("cloud-final")
    probe_log = vm.ssh("cat /var/log/decon-e2e-probe.log").stdout
    assert f"wrote {imds.facts.instance_id}" in probe_log, probe_log

    key = f"{PROBE_KEY_PREFIX}{imds.facts.instance_id}.json"
    body = json.loads(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["instance_id"] == imds.facts.instance_id
    assert body["credential_method"] == "iam-role"  # boto3's chain found IMDS, not env or files
    assert body["access_key"] == imds.facts.access_key_id
    assert body["endpoint"] == S3_URL_IN_GUEST
    assert body["decon_help"].startswith("usage: decon")
    seen = imds.facts.requests
    assert "PUT /latest/api/token" in seen
    assert "GET /latest/meta-data/instance-id" in seen
    assert f"GET /latest/meta-data/iam/security-credentials/{imds.facts.role}" in seen

    vm.ssh(f"touch {RELEASE_FILE}")
    vm.wait_for_poweroff(timeout=300)  # cloud-init's power_state, not the harness
    assert vm.powered_off_at is not None


# --- The four scenarios ------------------------------------------------------------------
#
# Common wiring (tests/e2e/scenario.py): a planted corpus (decon.synth.plant.make_corpus) and its
# reference put in the moto S3; the job config (input/output/reference on S3, aws.endpoint_url =
# S3_URL_IN_GUEST, install from the wheelhouse with --no-index) rendered by the real
# `render_user_data` and checked with `cloud-init schema` on the host before booting. Assertions
# read S3 with the host's boto3 and the guest's `systemctl status decon` / `journalctl -u decon`
# over ssh while it runs; what the guest printed is saved to build/e2e/<scenario>.observed.txt.

NOT_WIRED = "not wired yet (VM scenario still to write): "


def test_normal_run_uploads_reports_success_and_powers_off(
    boot_vm: BootVm, imds: ImdsStandin, s3: MotoServer, tmp_path: Path, figures: Figures
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
    seen = watch_decon_until_poweroff(vm, timeout=900)
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


def test_spot_interruption_mid_file_stops_uploads_finished_and_powers_off_in_time() -> None:
    """Scenario 2. Plan:
    - enough input that one file takes tens of seconds under TCG (MAX_FILES_DEBUG unset);
    - wait until the guest's progress (state dir or `systemctl status decon`) shows a file in
      progress, then imds.schedule_spot_notice("terminate", now + 120 s);
    - wait_for_poweroff(timeout=120) and assert the poweroff mark is before the notice time;
    - S3: finished files' reports exist, no report/cleaned object for the in-progress file
      (no partial object), _SUCCESS with completion_status=interrupted and a reason naming the
      spot action and time; console/journal show SPOT_NOTICE and SIGNAL_FORWARDED.
    """
    pytest.skip(
        NOT_WIRED + "needs input big enough that one file takes tens of seconds under TCG, "
        "then imds.schedule_spot_notice mid-file; not attempted in this pass"
    )


def test_upload_failure_keeps_instance_then_manual_finalize_succeeds() -> None:
    """Scenario 3. Plan:
    - in moto IAM create a user whose policy allows the input/reports prefixes but denies
      s3:PutObject on out/<job>/runs/*, serve its access key from IMDS, then s3.enforce_iam();
    - boot; the run finishes its files, finalizer uploads fail 7 times (1..32 s backoff, so
      ~63 s + TCG), `_FAILED_UPLOAD` cannot be written (denied) -> console/journal say so;
    - assert the VM is still up past the finalizer (keep policy, bounded time from config set
      short, e.g. 10 min) and `systemctl status decon` shows the failure;
    - restore access (attach an allow policy), ssh `decon-finalize`; assert it writes
      _SUCCESS, removes _FAILED_UPLOAD if present, and the VM powers off.
    - variant: deny only the sentinel's key so _FAILED_UPLOAD is written, then removed.
    """
    pytest.skip(NOT_WIRED + "needs moto IAM enforcement with credentials served by IMDS")


def test_finalize_twice_second_is_noop(
    boot_vm: BootVm, imds: ImdsStandin, s3: MotoServer, tmp_path: Path, figures: Figures
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
    vm.wait_for_guest_file(POWEROFF_CALLS, timeout=900)
    status = vm.systemctl_status()
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
