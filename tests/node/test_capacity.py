"""A queue node's Auto Scaling actions on the moto server (real boto3): scale-in protection
while it works, scale to zero exactly once when the queue drains, and `decon stop`."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from conftest import make_config
from decon.config import Config
from decon.eventlog import EventLog
from decon.fleet import stop
from decon.fleet.group import group_name
from decon.fleet.launch import launch_group
from decon.jobrun.job import EXIT_DONE
from decon.jobrun.workqueue import create_job_queues, enqueue_files, sqs_client
from decon.node.finalizer import FinalizeRequest, finalize_run
from fakes.fleet import ec2_env
from fakes.jobrun_world import IN_BUCKET, IN_PREFIX, job_sections, put_shards, run_inline

JOB = "test-job"


def start_group(s3, tmp_path: Path, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The job's group as `decon launch` makes it; the ids of the instances it started."""
    env = ec2_env(s3)
    cfg = make_config(
        tmp_path / "laptop",
        launch={"ami": env.ami, "subnet_id": env.subnet_id},
        run={"distribution": "queue"},
    )
    launch_group(
        cfg,
        count,
        ec2=s3.client("ec2"),
        autoscaling=s3.client("autoscaling"),
        renderer=lambda c, i, n: "#cloud-config\n",
    )
    group = s3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in group["Instances"])


def node_config(root: Path, instance_id: str) -> Config:
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    run = {"distribution": "queue", "autoscaling_group": group_name(JOB)}
    return make_config(root, node={"instance_id": instance_id}, **job_sections(root, run=run))


def fill(cfg: Config, s3, rels: list[str]) -> str:  # type: ignore[no-untyped-def]
    from decon.jobrun.inputs import InputFile

    url = create_job_queues(sqs_client(cfg), cfg)
    client = s3.client()
    files = [
        InputFile(
            rel,
            client.head_object(Bucket=IN_BUCKET, Key=IN_PREFIX + rel)["ContentLength"],
            f"s3://{IN_BUCKET}/{IN_PREFIX}{rel}",
        )
        for rel in rels
    ]
    enqueue_files(sqs_client(cfg), url, files)
    return url


def finalize(cfg: Config) -> str:
    sink = io.StringIO()
    finalize_run(
        cfg,
        FinalizeRequest(status="normal", exit_code=0, poweroff=False),
        log=EventLog(cfg.node.log_file, sink),
        journal=lambda unit, dest: "journalctl not found",
    )
    return Path(cfg.node.log_file).read_text()


def desired(s3) -> int:  # type: ignore[no-untyped-def]
    groups = s3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return groups[0]["DesiredCapacity"]


def test_nodes_protect_themselves_and_the_last_one_scales_to_zero_once(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = put_shards(s3.client(), 4)
    ids = start_group(s3, tmp_path, 2)
    a, b = (node_config(tmp_path / n, i) for n, i in zip("ab", ids, strict=True))
    fill(a, s3, list(truth))
    codes: list[int] = []
    nodes = [threading.Thread(target=lambda c=c: codes.append(run_inline(c))) for c in (a, b)]
    for t in nodes:
        t.start()
    for t in nodes:
        t.join(120)
    assert codes == [EXIT_DONE, EXIT_DONE]
    described = s3.client("autoscaling").describe_auto_scaling_instances(InstanceIds=ids)
    assert all(i["ProtectedFromScaleIn"] for i in described["AutoScalingInstances"])

    logs = [finalize(a), finalize(b)]
    assert desired(s3) == 0
    assert sum(log.count(" SCALED_TO_ZERO ") for log in logs) == 1
    assert sum(log.count(" SCALE_TO_ZERO_SKIPPED ") for log in logs) == 1
    # A manual rerun of the finalizer changes nothing.
    assert " SCALED_TO_ZERO " not in finalize(a).split("FINALIZE_SKIPPED")[-1]


def test_no_scale_to_zero_while_files_remain(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = put_shards(s3.client(), 2)
    (only,) = start_group(s3, tmp_path, 1)
    a = node_config(tmp_path / "a", only)
    fill(a, s3, list(truth)[:1])
    assert run_inline(a) == EXIT_DONE
    fill(a, s3, list(truth)[1:])  # more work arrived after the run
    log = finalize(a)
    assert " QUEUE_NOT_DRAINED visible=1 " in log and " SCALED_TO_ZERO " not in log
    assert desired(s3) == 1


def test_stop_sets_zero_and_lifts_protection(s3, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ids = start_group(s3, tmp_path, 2)
    autoscaling = s3.client("autoscaling")
    autoscaling.set_instance_protection(
        AutoScalingGroupName=group_name(JOB), InstanceIds=ids, ProtectedFromScaleIn=True
    )
    job = tmp_path / "job.yaml"
    job.write_text(f"job: {{id: {JOB}}}\nrun: {{distribution: queue}}\n")
    parser = __import__("argparse").ArgumentParser()
    stop.configure(parser)
    assert stop.run(parser.parse_args(["--config", str(job)])) == 0
    assert "desired capacity 0; 2 node(s) stopping" in capsys.readouterr().out
    assert desired(s3) == 0
    described = autoscaling.describe_auto_scaling_instances(InstanceIds=ids)
    assert not any(i["ProtectedFromScaleIn"] for i in described["AutoScalingInstances"])


def test_status_shows_the_queue_and_the_group(s3, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from decon.fleet import status

    truth = put_shards(s3.client(), 3)
    start_group(s3, tmp_path, 2)
    cfg = node_config(tmp_path / "a", "i-laptop")
    fill(cfg, s3, list(truth))
    job = tmp_path / "job.yaml"
    job.write_text(
        f"job: {{id: {JOB}}}\noutput: {{uri: '{cfg.output.uri}'}}\nrun: {{distribution: queue}}\n"
    )
    parser = __import__("argparse").ArgumentParser()
    status.configure(parser)
    status.run(parser.parse_args(["--config", str(job)]))
    shown = capsys.readouterr().out
    assert "queue: 3 waiting, 0 in flight, 0 dead-letter" in shown
    assert f"group decon-{JOB}: desired 2, 2 instances" in shown
    assert "files left" in shown and "RUNNING" in shown
