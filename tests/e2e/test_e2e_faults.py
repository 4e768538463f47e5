"""The node under faults, in a real VM: IMDS trouble before a spot notice, a spot stop and the
same disk booted again, connection resets during multipart uploads.

Run with `make e2e` (or `DECON_E2E=1 pytest tests/e2e -k <name>`); wiring as in test_e2e.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import ARTIFACTS, BootVm, Vm, check_user_data_schema
from scenario import (
    BIG_FILE,
    BUCKET,
    JOB_ID,
    SLOW_FILE,
    assert_reports_for_all,
    event_lines,
    input_stem,
    job_config,
    keys,
    only_success,
    put_job_inputs,
    record_observation,
    wait_for_guest_text,
    watch_decon_until_poweroff,
)

from decon.fleet.userdata import render_user_data
from fakes.faulty_proxy import FaultyProxy
from fakes.imds import FakeImds, iso
from fakes.moto_s3 import MotoServer

Figures = dict[str, dict[str, float]]
RUN_LOG = "/var/log/decon-run.log"
GUEST_RUN_TIMEOUT = 2400  # ssh-ready to job end (cloud-init's pip install is slow under TCG)
SPOT_WARNING_SECONDS = 120
SPOT_PATH = "/latest/meta-data/spot/instance-action"
# The fault sequence seen on a node: HTTP 500 for 20 s, then every request hangs 15 s.
FAIL_SECONDS, HANG_SECONDS = 20.0, 15.0
POLL_INTERVAL, REQUEST_TIMEOUT = 2.0, 2.0  # the spot section's defaults
GUEST_SLACK_SECONDS = 3.0  # python in a TCG guest on a shared 2-core host is slow to wake


def read_text(client: Any, key: str) -> str:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8", "replace")


def run_log_of(client: Any, run_id: str) -> str:
    return read_text(client, f"out/{JOB_ID}/runs/{run_id}/decon-run.log")


def states(log: str) -> list[str]:
    return [line.split(" STATE: ")[1].split()[0] for line in log.splitlines() if " STATE: " in line]


def successes(client: Any) -> dict[str, dict[str, Any]]:
    """run id -> `_SUCCESS` body, for every run of the job."""
    found = {}
    for key in keys(client, BUCKET, f"out/{JOB_ID}/runs/"):
        if key.endswith("/_SUCCESS"):
            found[key.split("/")[-2]] = json.loads(
                client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            )
    return found


def assert_complete_uploaded_log(log: str) -> None:
    """The run log as uploaded ends with the finalizer's last lines, not at FINALIZE_START."""
    seen = states(log)
    # Other writers (the waiting finalizer's FINALIZE_LOCKED/SKIPPED) may land after TERMINATING.
    assert "FINALIZE_SUCCESS" in seen and "TERMINATING" in seen, seen[-8:]
    assert seen.index("FINALIZE_SUCCESS") < len(seen) - 1 - seen[::-1].index("TERMINATING")


def first_notice_answer(imds: FakeImds, since: float) -> float | None:
    """When (fake's clock) the first request that got the notice arrived, at or after `since`."""
    with imds._lock:
        times = [r.at for r in imds.requests if r.path == SPOT_PATH and r.status == 200]
    times = [t for t in times if t >= since]
    return min(times) if times else None


def test_imds_faults_then_a_notice_is_acted_on_within_interval_plus_timeout(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """500s for 20 s, then every IMDS request hangs 15 s, then the notice: the watcher sees it
    within poll interval + request timeout (before: 19.5 s), and the job stops in time."""
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, slow_file=True)
    cfg = job_config(detect={"chunk_lines": 200, "prefilter": False})
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "imds-faults")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    wait_for_guest_text(vm, RUN_LOG, f"FILE_START file={SLOW_FILE}", timeout=GUEST_RUN_TIMEOUT)
    imds.fail_next(1_000_000)  # every request, token PUTs included, until cleared
    time.sleep(FAIL_SECONDS)
    imds.fail_next(0)
    imds.delay_next(1_000_000, HANG_SECONDS)
    time.sleep(HANG_SECONDS)
    imds.delay_next(0, 0)
    notice_at = (datetime.now(UTC) + timedelta(seconds=SPOT_WARNING_SECONDS)).replace(microsecond=0)
    imds.set_instance_action("terminate", iso(notice_at))
    served = imds.clock()
    vm.timings.mark("spot_notice_served")
    deadline = served + 60
    while (seen_at := first_notice_answer(imds, served)) is None and imds.clock() < deadline:
        time.sleep(0.05)
    assert seen_at is not None, "the watcher never fetched the notice"
    reaction = round(seen_at - served, 2)
    watch_journal = vm.ssh("journalctl --no-pager -o cat -u decon-spot-watch", check=False).stdout
    seen = watch_decon_until_poweroff(vm, timeout=SPOT_WARNING_SECONDS + 60, poll=3)
    seconds = round(time.monotonic() - started, 1)
    figures["scenario:imds_faults"] = {"reaction_seconds": reaction, "boot_to_poweroff": seconds}
    record_observation("imds_faults", seconds, seen)
    (ARTIFACTS / "imds_faults.spot-watch.txt").write_text(watch_journal)

    assert reaction <= POLL_INTERVAL + REQUEST_TIMEOUT + GUEST_SLACK_SECONDS, reaction
    assert "IMDS_ERROR kind=http status=500" in watch_journal, watch_journal
    assert "kind=timeout" in watch_journal, watch_journal
    assert "IMDS answering again after" in watch_journal, watch_journal
    assert "retry in 20s" not in watch_journal and "retry_in=2s" in watch_journal
    assert vm.powered_off_at is not None and vm.powered_off_at < notice_at
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "interrupted", sentinel
    log = run_log_of(client, run_id)
    assert event_lines(log, "SPOT_NOTICE action=terminate"), log
    assert event_lines(log, f"FILE_ABANDONED file={SLOW_FILE}"), log
    assert_reports_for_all(client, [i for i in inputs if i != SLOW_FILE])
    assert_complete_uploaded_log(log)


def test_spot_stop_then_the_same_disk_boots_again_and_redoes_only_the_unfinished_file(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """A spot `stop` mid-file: the run ends interrupted and the guest powers off. The same disk
    boots again with the notice cleared: a new RUN_ID does only the slow file; the old run keeps
    its interrupted `_SUCCESS`; every input has exactly one output."""
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, slow_file=True, slow_repeats=2)
    cfg = job_config(detect={"chunk_lines": 200, "prefilter": False})
    user_data = render_user_data(cfg, 0, 1)
    assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "spot-stop")
    started = time.monotonic()
    vm = boot_vm(user_data)

    vm.wait_for_ssh(timeout=300)
    wait_for_guest_text(vm, RUN_LOG, f"FILE_START file={SLOW_FILE}", timeout=GUEST_RUN_TIMEOUT)
    notice_at = (datetime.now(UTC) + timedelta(seconds=SPOT_WARNING_SECONDS)).replace(microsecond=0)
    imds.set_instance_action("stop", iso(notice_at))
    first = watch_decon_until_poweroff(vm, timeout=SPOT_WARNING_SECONDS + 60, poll=3)
    first_off = time.monotonic() - started
    assert vm.powered_off_at is not None and vm.powered_off_at < notice_at
    ((old_run, old_sentinel),) = successes(client).items()
    assert old_sentinel["completion_status"] == "interrupted", old_sentinel
    assert "spot stop notice" in old_sentinel["reason"], old_sentinel
    old_key = f"out/{JOB_ID}/runs/{old_run}/_SUCCESS"
    old_etag = client.head_object(Bucket=BUCKET, Key=old_key)["ETag"]
    slow_stem = input_stem(SLOW_FILE)
    assert not [k for k in keys(client, BUCKET, f"out/{JOB_ID}/reports/") if slow_stem in k]

    imds.clear_instance_action()  # EC2 starts the stopped instance: no notice any more
    vm.boot_again()
    vm.wait_for_ssh(timeout=600)
    second = watch_decon_until_poweroff(vm, timeout=GUEST_RUN_TIMEOUT)
    seconds = round(time.monotonic() - started, 1)
    figures["scenario:spot_stop_restart"] = {
        "boot_to_first_poweroff": round(first_off, 1),
        "second_boot_to_poweroff": round(seconds - first_off, 1),
        "boot_to_poweroff": seconds,
    }
    record_observation("spot_stop_boot1", round(first_off, 1), first)
    record_observation("spot_stop_boot2", seconds, second)

    runs = successes(client)
    assert set(runs) - {old_run}, runs
    (new_run,) = set(runs) - {old_run}
    assert runs[old_run] == old_sentinel  # the old run keeps its interrupted sentinel
    assert client.head_object(Bucket=BUCKET, Key=old_key)["ETag"] == old_etag
    assert runs[new_run]["completion_status"] == "normal", runs[new_run]
    log = run_log_of(client, new_run)
    (plan,) = event_lines(log, "JOB_PLAN")
    assert f"already_done={len(inputs) - 1}" in plan and "todo=1" in plan, plan
    assert [line.split("file=")[1].split()[0] for line in event_lines(log, "FILE_DONE")] == [
        SLOW_FILE
    ], log
    assert_reports_for_all(client, inputs)  # exactly one output per input, across both runs
    assert_complete_uploaded_log(log)


def test_connection_resets_on_upload_part_leave_every_output_exactly_once(
    boot_vm: BootVm, imds: FakeImds, s3: MotoServer, tmp_path: Path, figures: Figures
) -> None:
    """The guest's S3 goes through the fault proxy; two UploadPart requests of the multipart
    cleaned copy (threshold lowered to 1 MB) get a TCP reset. The upload is retried, the job
    ends normally, every output exists once and no multipart upload is left open."""
    client = s3.client()
    inputs = put_job_inputs(client, tmp_path, files=2, big_file_mb=12)
    proxy = FaultyProxy(s3.endpoint).start()
    try:
        resets = proxy.fail(
            "reset", method="PUT", key_contains=f"/cleaned/{input_stem(BIG_FILE)}", every=2, times=2
        )
        cfg = job_config(detect={"purify": True})
        cfg.run.multipart_threshold_mb = 1
        cfg.run.multipart_chunk_mb = 5
        user_data = render_user_data(cfg, 0, 1)
        assert "Valid cloud-config" in check_user_data_schema(user_data, ARTIFACTS / "resets")
        started = time.monotonic()
        vm: Vm = boot_vm(user_data, s3_port=int(proxy.endpoint.rsplit(":", 1)[1]))
        vm.wait_for_ssh(timeout=300)
        seen = watch_decon_until_poweroff(vm, timeout=GUEST_RUN_TIMEOUT)
        seconds = round(time.monotonic() - started, 1)
        cleaned_puts = [  # Seen.path is the key without the query string
            r for r in proxy.requests if r.method == "PUT" and "/cleaned/" in r.path
        ]
    finally:
        proxy.stop()
    figures["scenario:upload_part_resets"] = {"boot_to_poweroff": seconds}
    record_observation("upload_part_resets", seconds, seen)

    assert resets.hits == 2, (resets.hits, resets.matched)
    assert [r.fault for r in cleaned_puts].count("reset") == 2
    assert len(cleaned_puts) >= 6  # 3 parts, the failed attempts' parts and the retries
    run_id, sentinel = only_success(client)
    assert sentinel["completion_status"] == "normal" and sentinel["files"]["failed"] == 0
    assert_reports_for_all(client, inputs)
    cleaned = {
        k: size
        for k, size in keys(client, BUCKET, f"out/{JOB_ID}/cleaned/").items()
        if input_stem(BIG_FILE) in k
    }
    assert len(cleaned) == 1, cleaned
    (cleaned_key,) = cleaned
    etag = client.head_object(Bucket=BUCKET, Key=cleaned_key)["ETag"].strip('"')
    assert "-" in etag and int(etag.rsplit("-", 1)[1]) >= 2, etag  # a multipart object
    original = client.get_object(Bucket=BUCKET, Key=f"input/{BIG_FILE}")["Body"].read()
    body = client.get_object(Bucket=BUCKET, Key=cleaned_key)["Body"].read()
    kept = body.splitlines()
    assert 0 < len(kept) < len(original.splitlines())  # planted lines dropped, the rest kept
    assert len(body) > 5 << 20  # more than one 5 MB part
    assert set(kept) <= set(original.splitlines())
    assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "open uploads"
    log = run_log_of(client, run_id)
    assert "STATE: S3_RETRY" in log, log
    assert_complete_uploaded_log(log)
    assert "reboot: Power down" in vm.console()
