"""The job's EC2 instances, found by the `decon:job` tag."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from decon.config import AwsSection
from decon.errors import UserError
from decon.fleet.health import InstanceFacts

JOB_TAG = "decon:job"
HOST_INDEX_TAG = "decon:host-index"
HOST_COUNT_TAG = "decon:host-count"


def ec2_client(aws: AwsSection) -> Any:
    """An EC2 client for the job's region. `aws.endpoint_url` is for S3-compatible stores and
    is not used here; boto3 itself honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_EC2."""
    return boto3.client("ec2", region_name=aws.region)


def autoscaling_client(aws: AwsSection) -> Any:
    """An Auto Scaling client for the job's region (AWS_ENDPOINT_URL honoured, as for EC2)."""
    return boto3.client("autoscaling", region_name=aws.region)


def aws_error(what: str, exc: Exception) -> UserError:
    """One line for a failed EC2 call."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return UserError(f"{what}: {err.get('Code', '?')}: {err.get('Message', '')}")
    return UserError(f"{what}: {exc}")


def job_instances(ec2: Any, job_id: str) -> list[InstanceFacts]:
    """Every instance tagged decon:job=<job_id> (terminated ones too, while EC2 lists them)."""
    found = []
    try:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{JOB_TAG}", "Values": [job_id]}]
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                found.extend(_facts(i) for i in reservation.get("Instances", []))
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("ec2 describe-instances", exc) from None
    return sorted(found, key=lambda i: (i.host_index is None, i.host_index, i.launch_time))


def _facts(raw: dict[str, Any]) -> InstanceFacts:
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    return InstanceFacts(
        instance_id=raw["InstanceId"],
        state=raw.get("State", {}).get("Name", "?"),
        instance_type=raw.get("InstanceType", "?"),
        launch_time=raw["LaunchTime"],
        host_index=_tag_int(tags.get(HOST_INDEX_TAG)),
        host_count=_tag_int(tags.get(HOST_COUNT_TAG)),
        lifecycle=raw.get("InstanceLifecycle", "on-demand"),
    )


def _tag_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
