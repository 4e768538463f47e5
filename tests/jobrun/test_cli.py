"""`decon run` as a real subprocess: signals, exit codes, user errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, make_config
from fakes.jobrun_world import (
    OUT_BUCKET,
    basename,
    done_names,
    job_sections,
    keys,
    put_shards,
    write_job_file,
)

TESTS = REPO / "tests"
DETECTOR = "fakes.marker_detector:marker_factory"


def start(config: Path, *extra: str, **env: str) -> subprocess.Popen:
    full_env = dict(os.environ, PYTHONPATH=str(TESTS), **env)
    full_env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        [sys.executable, "-m", "decon.cli", "run", "--config", str(config), *extra],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def events(log: Path, state: str) -> list[str]:
    if not log.exists():
        return []
    lines = [x for x in log.read_text().splitlines() if f"STATE: {state} " in x]
    return [x.split("file=", 1)[1].split(" ", 1)[0] for x in lines]


def test_sigterm_mid_file_publishes_nothing_partial_and_rerun_completes(s3, node_root) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 6, lines=30)
    cfg = make_config(
        node_root,
        **job_sections(node_root, detect={"purify": True}, run={"download_concurrency": 1}),
    )
    config = write_job_file(cfg, node_root / "job.yaml")
    log = Path(cfg.node.log_file)
    proc = start(config, "--detector", DETECTOR, FAKE_DETECT_SLEEP="0.03")
    # wait until one file is published and the next one is being detected
    wait_for(
        lambda: (
            len(events(log, "FILE_DONE")) >= 1
            and len(events(log, "FILE_START")) > len(events(log, "FILE_DONE"))
        )
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    started, done = events(log, "FILE_START"), events(log, "FILE_DONE")
    in_progress = [rel for rel in started if rel not in done]
    assert len(in_progress) == 1
    published = done_names(client, cfg)
    assert published == {basename(r) for r in done}
    stem = basename(in_progress[0])
    leftovers = [k for k in keys(client, OUT_BUCKET) if f"/{stem}." in k]
    assert leftovers == []  # neither its cleaned copy nor its report/marker
    assert client.list_multipart_uploads(Bucket=OUT_BUCKET).get("Uploads", []) == []
    assert "STATE: STOP_REQUESTED signal=SIGTERM" in log.read_text()
    assert "FILE_ABANDONED file=" + in_progress[0] in log.read_text()

    proc = start(config, "--detector", DETECTOR)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert done_names(client, cfg) == {basename(r) for r in truth}
    rerun_started = events(log, "FILE_START")[len(started) :]
    assert set(rerun_started) == set(truth) - set(done)


def test_bad_config_is_one_line_exit_2(node_root: Path) -> None:
    config = node_root / "job.yaml"
    config.write_text("run:\n  max_disk_mb: lots\n")
    proc = start(config)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "run.max_disk_mb: expected an integer" in err
    assert "Traceback" not in err


def test_missing_bucket_is_one_line_exit_2(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket=OUT_BUCKET)
    cfg = make_config(node_root, **job_sections(node_root, input={"uri": "s3://no-such/x/"}))
    proc = start(write_job_file(cfg, node_root / "job.yaml"), "--detector", DETECTOR)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "\n" not in err.strip() and "Traceback" not in err
    assert err.strip().endswith(": input.uri: bucket 'no-such' does not exist (s3://no-such/x/)")


def test_dry_run_lists_this_hosts_files(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    truth = put_shards(s3.client(), 10)
    cfg = make_config(node_root, **job_sections(node_root))
    config = write_job_file(cfg, node_root / "job.yaml")
    seen = []
    for index in range(3):
        proc = start(config, "--dry-run", "--host-index", str(index), "--host-count", "3")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        seen += [line.split("\t")[1] for line in out.splitlines() if "\t" in line]
    assert sorted(u.rsplit("train/v1/", 1)[1] for u in seen) == sorted(truth)
    assert keys(s3.client(), OUT_BUCKET) == {}
