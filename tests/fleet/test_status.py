"""decon status from prepared S3 runs and EC2 instances on the moto server."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import yaml

from conftest import make_config
from decon.cli import main
from decon.fleet.status import collect, render, to_json
from fakes.fleet import BUCKET, ec2_env, put_run, run_id, tagged_instance

JOB = "test-job"
RUNS = f"out/{JOB}/runs/"


def prepare(s3):
    """Five hosts, one per state: running, stale, success, failed upload, interrupted."""
    env = ec2_env(s3)
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(hours=2)
    running = tagged_instance(s3, env, JOB, 0, 5)
    put_run(
        client,
        RUNS,
        run_id(now - dt.timedelta(minutes=20), running),
        host_index=0,
        host_count=5,
        beat_at=now - dt.timedelta(seconds=30),
        files=(10, 4, 1, 0),
    )
    stale = tagged_instance(s3, env, JOB, 1, 5)
    put_run(
        client,
        RUNS,
        run_id(old, stale),
        host_index=1,
        host_count=5,
        beat_at=old + dt.timedelta(minutes=10),
        files=(8, 2, 0, 0),
    )
    put_run(
        client,
        RUNS,
        run_id(old, "i-0done"),
        host_index=2,
        host_count=5,
        beat_at=old,
        sentinel="normal",
        files=(9, 9, 3, 0),
    )
    failed = tagged_instance(s3, env, JOB, 3, 5)
    put_run(
        client,
        RUNS,
        run_id(old, failed),
        host_index=3,
        host_count=5,
        beat_at=old,
        sentinel="failed_upload",
        files=(7, 7, 0, 1),
    )
    gone = tagged_instance(s3, env, JOB, 4, 5)
    s3.client("ec2").terminate_instances(InstanceIds=[gone])
    put_run(
        client,
        RUNS,
        run_id(old, gone),
        host_index=4,
        host_count=5,
        beat_at=old,
        sentinel="interrupted",
        files=(6, 3, 1, 0),
    )
    return now, {"running": running, "stale": stale, "failed": failed, "gone": gone}


def job_config(tmp_path):
    return make_config(tmp_path, output={"uri": f"s3://{BUCKET}/out"})


def test_every_state_from_prepared_s3_and_ec2(s3, tmp_path):
    from decon.storage import open_storage

    now, ids = prepare(s3)
    cfg = job_config(tmp_path)
    health = collect(cfg, s3.client("ec2"), open_storage(cfg.output_prefix("runs"), cfg.aws), now)
    assert health.host_count == 5
    verdicts = [(h.verdict, h.why) for h in health.hosts]
    assert verdicts[0] == ("running", "heartbeat 30s ago")
    assert (
        verdicts[1][0] == "needs attention" and "stale: last heartbeat 110m ago" in verdicts[1][1]
    )
    assert ids["stale"] in verdicts[1][1]
    assert verdicts[2][0] == "finished"
    assert verdicts[3][0] == "needs attention" and "_FAILED_UPLOAD" in verdicts[3][1]
    assert "AccessDenied" in verdicts[3][1]
    assert verdicts[4][0] == "needs attention" and "interrupted" in verdicts[4][1]
    assert "no live instance" in verdicts[4][1]
    assert health.verdict == "needs attention"
    assert health.totals == {"assigned": 40, "done": 25, "contaminated": 5, "failed": 1}
    states = {i.instance_id: i.state for h in health.hosts for i in h.instances}
    assert states[ids["gone"]] in ("shutting-down", "terminated")
    text = render(health, now)
    for needle in (
        "_SUCCESS(normal)",
        "_FAILED_UPLOAD(interrupted)",
        "_SUCCESS(interrupted)",
        "4/10",
        ids["running"],
        "totals: files 25/40 done, 5 contaminated, 1 failed",
        "NEEDS ATTENTION",
        "host 1: stale",
        "host 3: _FAILED_UPLOAD",
        "host 4: interrupted",
    ):
        assert needle in text, needle
    data = json.loads(json.dumps(to_json(health, now)))
    assert [h["verdict"] for h in data["hosts"]] == [
        "running",
        "needs attention",
        "finished",
        "needs attention",
        "needs attention",
    ]
    assert data["hosts"][2]["latest_run"]["sentinel"]["completion_status"] == "normal"


def test_all_finished_exits_zero_and_cli_json(s3, tmp_path, capsys):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for i in range(2):
        put_run(
            client,
            RUNS,
            run_id(old, f"i-0{i}"),
            host_index=i,
            host_count=2,
            beat_at=old,
            sentinel="normal",
        )
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"job": {"id": JOB}, "output": {"uri": f"s3://{BUCKET}/out"}}))
    assert main(["status", "--config", str(job), "--json", "--no-ec2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "finished" and data["summary"] == "all 2 hosts finished"
    # --watch stops by itself once finished
    assert main(["status", "--config", str(job), "--watch", "1"]) == 0
    assert "FINISHED" in capsys.readouterr().out


def test_watch_is_bounded_and_attention_exits_3(s3, tmp_path, capsys):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"job": {"id": JOB}, "output": {"uri": f"s3://{BUCKET}/out"}}))
    code = main(["status", "--config", str(job), "--watch", "1", "--max-refreshes", "1"])
    out = capsys.readouterr().out
    assert code == 3 and out.count("nothing launched for job test-job") == 2


def test_cli_missing_bucket_is_one_line(s3, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"job": {"id": JOB}, "output": {"uri": "s3://nope/out"}}))
    out = subprocess.run(
        [sys.executable, "-m", "decon.cli", "status", "--config", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "NoSuchBucket" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_malformed_heartbeat_is_a_warning_not_fatal(s3, tmp_path):
    from decon.storage import open_storage

    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    now = dt.datetime.now(dt.UTC)
    rid = run_id(now, "i-0bad")
    client.put_object(Bucket=BUCKET, Key=f"{RUNS}{rid}/heartbeat.json", Body=b"{not json")
    cfg = job_config(tmp_path)
    health = collect(cfg, None, open_storage(cfg.output_prefix("runs"), cfg.aws), now)
    assert any("heartbeat.json: bad heartbeat" in p for p in health.problems)
