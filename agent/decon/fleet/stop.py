"""`decon stop`: cancel a queue job. The group goes to 0 and its nodes lose their scale-in
protection, so the group terminates them; each node, on its shutdown's SIGTERM, releases its
files to the queue and finalizes as on a spot notice. The queue keeps the files not done: a
later `decon launch` of the same job takes them up again."""

from __future__ import annotations

import argparse

from decon.config import load_config
from decon.errors import UserError
from decon.fleet.group import stop_group
from decon.fleet.instances import autoscaling_client


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the job file (YAML)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not cfg.run.fleet_queued:
        raise UserError("decon stop: not with run.distribution: shard (a shard job has no group)")
    stopped = stop_group(autoscaling_client(cfg.aws), cfg.job.id)
    print(
        f"job {cfg.job.id}: desired capacity 0; {len(stopped)} node(s) stopping "
        "(each releases its files and finalizes)"
    )
    return 0
