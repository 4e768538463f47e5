"""The product in a real VM: cloud-init, systemd, IMDSv2 at 169.254.169.254, S3 on the host.

Run with `make e2e` (never by `make test`). One VM at a time; each boot is ~30 s to ssh under TCG.
"""

from __future__ import annotations

import json

import pytest
from harness import ARTIFACTS, S3_URL_IN_GUEST, BootVm, check_user_data_schema
from imds_standin import ImdsStandin
from probe import DONE_FILE, PROBE_KEY_PREFIX, RELEASE_FILE, probe_user_data

from fakes.moto_s3 import MotoServer

BUCKET = "decon-e2e"


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


# --- The four scenarios: planned, waiting on the agent (NOT done) -------------------------
#
# Common wiring once the agent lands (all four):
#   job = job file with input s3://decon-e2e/input/, output s3://decon-e2e/out/, reference from a
#         small eval set put in S3 by the test, aws.endpoint_url = S3_URL_IN_GUEST,
#         install.find_links = WHEELHOUSE_URL_IN_GUEST,
#         install.extra_pip_args = ["--no-index", "--no-compile", "--trusted-host", WHEELHOUSE_IP]
#   user_data = `decon render-user-data --config job.yaml` run on the host (subprocess, real CLI);
#         validated on the host with `cloud-init schema` before booting.
#   guest env for boto3 under TCG: AWS_METADATA_SERVICE_TIMEOUT=5, ..._NUM_ATTEMPTS=3 (the
#         units' Environment= or /etc/default/decon; botocore's 1 s default is too tight).
#   IMDS: switch the `imds` fixture to tests/fakes/imds.py (standalone, control API for notices).
#   Assertions read S3 with the host's boto3 and the guest's `systemctl status decon` and
#   `journalctl -u decon -o cat` over ssh before the poweroff (or the serial console after).

PENDING = "pending on the agent landing on main: "


def test_normal_run_uploads_reports_success_and_powers_off() -> None:
    """Scenario 1. Plan:
    - put 3 small JSONL shards (one contaminated, one clean, one .gz) + reference into S3;
    - boot with the rendered user-data; wait for ssh; poll `systemctl status decon` until its
      Status line shows progress; record it for the closing note;
    - wait_for_poweroff (the agent's own `systemctl poweroff`, not the harness);
    - assert reports/{basename}.report.jsonl for the contaminated file, reports/{b}.clean for
      the clean ones, runs/<RUN_ID>/_SUCCESS with completion_status=normal and files.done == 3,
      runs/<RUN_ID>/decon-run.log and journal.jsonl present; console shows TERMINATING.
    """
    pytest.skip(PENDING + "render-user-data, units, decon run, wrapper, finalizer")


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
    pytest.skip(PENDING + "spot watcher, wrapper signal forwarding, finalizer deadline")


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
    pytest.skip(PENDING + "finalizer upload policy + keep-alive, decon-finalize CLI")


def test_finalize_twice_second_is_noop() -> None:
    """Scenario 4. Plan:
    - normal run with node.poweroff_command set to a guest stub that records its calls (so the
      VM stays up), or keep-alive after success; wait for _SUCCESS in S3;
    - note _SUCCESS's LastModified/ETag and the object count under runs/<RUN_ID>/;
    - ssh `decon-finalize` again: exit 0, FINALIZE_SKIPPED in /var/log/decon-run.log, no new
      object and _SUCCESS unchanged (ETag, LastModified); then ssh poweroff and wait for it.
    """
    pytest.skip(PENDING + "finalizer (FINALIZE_SKIPPED path), decon-finalize CLI")
