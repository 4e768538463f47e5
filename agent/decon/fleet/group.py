"""The job's Auto Scaling group (queue distribution): replacement capacity and elastic size.

`decon launch` makes a launch template (the rendered user-data, IMDSv2 only, terminate on
shutdown) and a group with a mixed-instances policy over the job's instance types:
`price-capacity-optimized` spot allocation (or on-demand), Capacity Rebalancing on, desired
capacity `--count`, minimum 0. A reclaimed spot node is replaced by the group; its files went
back to the queue. Nodes protect themselves from scale-in, so a smaller desired capacity never
kills a node in the middle of a file: they power off (terminate) when the queue is drained.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from decon.config import Config
from decon.errors import UserError
from decon.fleet.instances import JOB_TAG, aws_error
from decon.jobrun.workqueue import queue_name


def group_name(job_id: str) -> str:
    """The group and its launch template share the job queue's name, `decon-{job}`."""
    return queue_name(job_id)


@dataclass
class GroupRequest:
    """The two calls that start a job's group (pure: built without AWS)."""

    template: dict[str, Any]  # CreateLaunchTemplate
    group: dict[str, Any]  # CreateAutoScalingGroup

    def describe(self) -> dict[str, Any]:
        data = self.template["LaunchTemplateData"]
        shown = {**data, "UserData": f"<{len(data['UserData'])} bytes of base64 cloud-config>"}
        return {"launch_template": {**self.template, "LaunchTemplateData": shown}, **self.group}


def build_group_request(
    cfg: Config,
    count: int,
    instance_params: dict[str, Any],
    instance_types: list[str],
    spot: bool,
) -> GroupRequest:
    """`instance_params`: what every node instance has (`launch.instance_params`)."""
    name = group_name(cfg.job.id)
    data = dict(instance_params)
    data["UserData"] = base64.b64encode(data["UserData"].encode()).decode()
    template = {
        "LaunchTemplateName": name,
        "LaunchTemplateData": data,
        "TagSpecifications": [
            {"ResourceType": "launch-template", "Tags": [{"Key": JOB_TAG, "Value": cfg.job.id}]}
        ],
    }
    distribution: dict[str, Any] = {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0 if spot else 100,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    if spot and cfg.launch.max_price is not None:
        distribution["SpotMaxPrice"] = f"{cfg.launch.max_price:g}"
    group: dict[str, Any] = {
        "AutoScalingGroupName": name,
        "MinSize": 0,
        "MaxSize": count,
        "DesiredCapacity": count,
        "CapacityRebalance": True,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": name, "Version": "$Latest"},
                "Overrides": [{"InstanceType": t} for t in instance_types],
            },
            "InstancesDistribution": distribution,
        },
        "Tags": [
            {"Key": JOB_TAG, "Value": cfg.job.id, "PropagateAtLaunch": True},
            {"Key": "Name", "Value": name, "PropagateAtLaunch": True},
        ],
    }
    if cfg.launch.subnet_id:
        group["VPCZoneIdentifier"] = cfg.launch.subnet_id
    return GroupRequest(template, group)


def create_group(ec2: Any, autoscaling: Any, request: GroupRequest) -> None:
    try:
        ec2.create_launch_template(**request.template)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("ec2 create-launch-template", exc) from None
    try:
        autoscaling.create_auto_scaling_group(**request.group)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("autoscaling create-auto-scaling-group", exc) from None


def describe_group(autoscaling: Any, job_id: str) -> dict[str, Any] | None:
    try:
        groups = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group_name(job_id)]
        )["AutoScalingGroups"]
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("autoscaling describe-auto-scaling-groups", exc) from None
    return groups[0] if groups else None


def resize_group(autoscaling: Any, job_id: str, *, more: int = 0, to: int | None = None) -> int:
    """Set the running job's desired capacity to `to`, or raise it by `more` (the maximum
    follows); returns the new desired capacity."""
    group = describe_group(autoscaling, job_id)
    if group is None:
        raise UserError(f"--add: job {job_id} has no Auto Scaling group (start it with --count)")
    desired = to if to is not None else group["DesiredCapacity"] + more
    try:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"],
            MaxSize=max(group["MaxSize"], desired),
            DesiredCapacity=desired,
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("autoscaling update-auto-scaling-group", exc) from None
    return desired


def stop_group(autoscaling: Any, job_id: str) -> list[str]:
    """Cancel the job: desired 0, and the nodes' scale-in protection lifted so the group
    terminates them (each node stops and finalizes as on SIGTERM); the instances stopped."""
    group = describe_group(autoscaling, job_id)
    if group is None:
        raise UserError(f"decon stop: job {job_id} has no Auto Scaling group")
    name = group["AutoScalingGroupName"]
    ids = [i["InstanceId"] for i in group.get("Instances", [])]
    try:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0
        )
        if ids:
            autoscaling.set_instance_protection(
                AutoScalingGroupName=name, InstanceIds=ids, ProtectedFromScaleIn=False
            )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("autoscaling update-auto-scaling-group", exc) from None
    return ids
