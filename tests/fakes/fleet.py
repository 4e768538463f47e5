"""Prepared fleet state on the moto server: a VPC, runs/ objects, tagged instances."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from decon.jobrun.heartbeat import FileCounts, HeartbeatRecord
from decon.node.sentinel import Sentinel

BUCKET = "decon-out"


@dataclass
class Ec2Env:
    ami: str
    subnet_id: str
    security_group_id: str
    profile: str


def ec2_env(moto: Any) -> Ec2Env:
    """A subnet, a security group, an instance profile and a known AMI on the moto server."""
    ec2 = moto.client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="decon", Description="decon", VpcId=vpc)["GroupId"]
    moto.client("iam").create_instance_profile(InstanceProfileName="decon-node")
    return Ec2Env(ami, subnet, sg, "decon-node")


def run_id(started: dt.datetime, instance_id: str) -> str:
    return f"run-{started:%Y%m%d-%H%M%S}Z-{instance_id}"


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def put_run(
    s3: Any,
    runs_prefix: str,
    rid: str,
    *,
    host_index: int,
    host_count: int,
    beat_at: dt.datetime | None = None,
    sentinel: str | None = None,  # "normal" | "interrupted" | "failed_upload"
    files: tuple[int, int, int, int] = (10, 4, 1, 0),
) -> None:
    """Write a run's heartbeat and/or sentinel under s3://BUCKET/<runs_prefix><rid>/."""
    assigned, done, contaminated, failed = files
    instance = rid.split("-", 3)[3]  # run-YYYYMMDD-HHMMSSZ-<instance id>
    if beat_at is not None:
        beat = HeartbeatRecord(
            rid,
            "job",
            instance,
            host_index,
            host_count,
            iso(beat_at),
            files=FileCounts(assigned, done, contaminated, failed),
        )
        s3.put_object(Bucket=BUCKET, Key=f"{runs_prefix}{rid}/heartbeat.json", Body=beat.to_json())
    s3.put_object(Bucket=BUCKET, Key=f"{runs_prefix}{rid}/decon-run.log", Body=b"log\n")
    if sentinel is not None:
        failed_upload = sentinel == "failed_upload"
        sentinel_body = Sentinel(
            run_id=rid,
            job_id="job",
            instance_id=instance,
            host_index=host_index,
            host_count=host_count,
            finalized_at=iso(beat_at or dt.datetime.now(dt.UTC)),
            status="failed_upload" if failed_upload else "success",
            completion_status="normal" if sentinel == "normal" else "interrupted",
            exit_code=0 if sentinel == "normal" else 143,
            reason="spot interruption notice (terminate)" if sentinel != "normal" else "job exit 0",
            files={
                "assigned": assigned,
                "done": done,
                "contaminated": contaminated,
                "failed": failed,
            },
            last_error="AccessDenied on reports/x.report.jsonl" if failed_upload else None,
        )
        key = f"{runs_prefix}{rid}/{sentinel_body.name}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=sentinel_body.to_json())


def tagged_instance(moto: Any, env: Ec2Env, job: str, host_index: int, host_count: int) -> str:
    """Start one instance tagged as host `host_index` of `job` (as decon launch would)."""
    ec2 = moto.client("ec2")
    tags = [
        {"Key": "decon:job", "Value": job},
        {"Key": "decon:host-index", "Value": str(host_index)},
        {"Key": "decon:host-count", "Value": str(host_count)},
    ]
    reply = ec2.run_instances(
        ImageId=env.ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return reply["Instances"][0]["InstanceId"]
