"""A queue node's two Auto Scaling actions (only with `run.autoscaling_group`, which
`decon launch` sets): protect itself from scale-in while it works, and, once the queue is
drained and its own sentinel written, set the group's desired capacity to 0 so no replacement
starts for a finished job. Neither is ever fatal: a failure is logged and the node goes on.
"""

from __future__ import annotations

import json
from typing import Any

from decon.config import Config
from decon.eventlog import EventLog, iso_utc, one_line
from decon.jobrun.workqueue import WorkQueue
from decon.storage import Storage, aws_client

SCALED_TO_ZERO = "_SCALED_TO_ZERO"  # at the root of runs/: written once, by the node that won


def autoscaling(cfg: Config) -> Any:
    return aws_client("autoscaling", cfg.aws, attempts=3)


def protect_from_scale_in(cfg: Config, instance_id: str, log: EventLog) -> None:
    """Keep the group from terminating this node to shrink (a smaller desired capacity, or
    `decon stop`'s lifting of it, is what ends a node)."""
    group = cfg.run.autoscaling_group
    if not group:
        return
    try:
        autoscaling(cfg).set_instance_protection(
            AutoScalingGroupName=group, InstanceIds=[instance_id], ProtectedFromScaleIn=True
        )
        log.event("SCALE_IN_PROTECTED", group=group, instance=instance_id)
    except Exception as exc:
        log.event("SCALE_IN_PROTECTION_FAILED", group=group, error=one_line(exc))


def scale_to_zero_if_drained(cfg: Config, runs: Storage, instance_id: str, log: EventLog) -> bool:
    """After this node's sentinel: when the queue holds no message, the first node to get here
    (a conditional write of `runs/_SCALED_TO_ZERO`) sets the desired capacity to 0."""
    group = cfg.run.autoscaling_group
    if not group or not cfg.run.queued:
        return False
    try:
        counts = WorkQueue.open(cfg).counts()
        if counts.visible or counts.in_flight:
            log.event("QUEUE_NOT_DRAINED", visible=counts.visible, in_flight=counts.in_flight)
            return False
        claim = json.dumps({"instance_id": instance_id, "at": iso_utc()}).encode()
        if not runs.put_bytes(SCALED_TO_ZERO, claim, if_absent=True):
            log.event("SCALE_TO_ZERO_SKIPPED", why="another node did it", marker=SCALED_TO_ZERO)
            return False
        autoscaling(cfg).set_desired_capacity(
            AutoScalingGroupName=group, DesiredCapacity=0, HonorCooldown=False
        )
    except Exception as exc:
        log.event("SCALE_TO_ZERO_FAILED", group=group, error=one_line(exc))
        return False
    log.event("SCALED_TO_ZERO", group=group, dead_letter=counts.dead)
    return True
