"""`decon launch`: start the job's fleet: one EC2 instance per host index, each with its user-data.

Host indices 0..N-1 partition the input (md5 of the key mod N), so together they cover every
shard exactly once. By default one `run_instances` call per index, tagged
`decon:host-index`; with `launch.use_launch_index` one call for all hosts whose nodes read their
index from `ami-launch-index`. `--only-missing` relaunches only the indices whose shard is not
finished and that have no pending/running instance (reclaimed spot nodes, failed hosts).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from decon.config import Config, ConfigError, load_config, require_job
from decon.errors import UserError
from decon.fleet.group import (
    GroupRequest,
    build_group_request,
    create_group,
    describe_group,
    group_name,
    resize_group,
)
from decon.fleet.health import missing_hosts
from decon.fleet.instances import (
    HOST_COUNT_TAG,
    HOST_INDEX_TAG,
    JOB_TAG,
    autoscaling_client,
    aws_error,
    ec2_client,
)
from decon.fleet.userdata import render_user_data
from decon.jobrun.workqueue import fill_job_queue
from decon.storage import open_storage

# (cfg, host_index, host_count) -> #cloud-config text
Renderer = Callable[[Config, "int | None", "int | None"], str]

# Errors that mean "this type has no capacity here now": try the next instance type.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",
    }
)


@dataclass
class LaunchRequest:
    """One `run_instances` call: the host indices it starts and its parameters."""

    host_indices: list[int]
    host_count: int
    instance_types: list[str]  # first choice, then fallbacks on capacity errors
    params: dict[str, Any]  # everything but InstanceType

    def describe(self) -> dict[str, Any]:
        """What `--dry-run` prints (user-data summarised by size)."""
        shown = {k: v for k, v in self.params.items() if k != "UserData"}
        shown["UserData"] = f"<{len(self.params['UserData'].encode())} bytes of cloud-config>"
        return {
            "host_indices": self.host_indices,
            "host_count": self.host_count,
            "instance_types": self.instance_types,
            "params": shown,
        }


def default_renderer(cfg: Config, host_index: int | None, host_count: int | None) -> str:
    """`decon.fleet.userdata.render_user_data` (the real cloud-config of one host)."""
    return render_user_data(cfg, host_index=host_index, host_count=host_count)


def check_launch_config(cfg: Config) -> None:
    """What `decon launch` needs beyond a valid job file."""
    if not cfg.launch.ami:
        raise ConfigError("launch.ami: required by decon launch (an AMI id, e.g. ami-0abc...)")
    if not cfg.launch.ami.startswith("ami-"):
        raise ConfigError(f"launch.ami: {cfg.launch.ami!r} is not an AMI id (ami-...)")
    if cfg.launch.use_launch_index:
        run_section = getattr(cfg, "run", None)
        if not getattr(run_section, "host_index_from_imds", False):
            raise ConfigError(
                "launch.use_launch_index: needs run.host_index_from_imds: true "
                "(nodes must read their index from ami-launch-index)"
            )


def build_requests(
    cfg: Config,
    count: int,
    indices: list[int],
    *,
    instance_types: list[str] | None = None,
    spot: bool | None = None,
    renderer: Renderer = default_renderer,
    root_device: str | None = None,
) -> list[LaunchRequest]:
    """The `run_instances` calls that start `indices` of a fleet of `count` hosts (pure)."""
    launch = cfg.launch
    types = instance_types or [launch.instance_type, *launch.instance_types]
    types = list(dict.fromkeys(types))  # keep order, drop repeats
    use_spot = launch.spot if spot is None else spot
    if launch.use_launch_index and indices == list(range(count)):
        groups = [indices]
    else:
        groups = [[i] for i in indices]
    requests = []
    for group in groups:
        single = len(group) == 1
        # One call for all: every node gets index 0 in its file and reads the real one from IMDS.
        user_data = renderer(cfg, group[0] if single else 0, count)
        tags = {
            "Name": f"decon-{cfg.job.id}-{group[0]}" if single else f"decon-{cfg.job.id}",
            JOB_TAG: cfg.job.id,
            HOST_COUNT_TAG: str(count),
            **launch.tags,
        }
        if single:
            tags[HOST_INDEX_TAG] = str(group[0])
        params: dict[str, Any] = {
            "MinCount": len(group),  # all or nothing: every index 0..N-1 exists
            "MaxCount": len(group),
            **instance_params(cfg, user_data, tags, root_device),
        }
        if use_spot:
            spot_options: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if launch.max_price is not None:
                spot_options["MaxPrice"] = f"{launch.max_price:g}"
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options}
        if launch.subnet_id:
            params["SubnetId"] = launch.subnet_id
        requests.append(LaunchRequest(group, count, types, params))
    return requests


def instance_params(
    cfg: Config, user_data: str, tags: dict[str, str], root_device: str | None
) -> dict[str, Any]:
    """What every node instance has, whether started by RunInstances or by the job's launch
    template: AMI, user-data, IMDSv2 only, terminate on shutdown, tags, profile, network, disk."""
    launch = cfg.launch
    params: dict[str, Any] = {
        "ImageId": launch.ami,
        "UserData": user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": launch.metadata_hop_limit,
        },
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            for kind in ("instance", "volume")
        ],
    }
    if launch.iam_instance_profile:
        key = "Arn" if launch.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: launch.iam_instance_profile}
    if launch.security_group_ids:
        params["SecurityGroupIds"] = list(launch.security_group_ids)
    if launch.key_name:
        params["KeyName"] = launch.key_name
    if launch.root_volume_gb is not None:
        params["BlockDeviceMappings"] = [
            {
                "DeviceName": root_device or "<root device of the AMI>",
                "Ebs": {
                    "VolumeSize": launch.root_volume_gb,
                    "VolumeType": launch.root_volume_type,
                    "DeleteOnTermination": True,
                },
            }
        ]
    return params


@dataclass(frozen=True)
class Launched:
    instance_id: str
    host_index: int
    instance_type: str
    lifecycle: str


def root_device_name(ec2: Any, ami: str) -> str:
    """The AMI's root device; a missing AMI is one line."""
    try:
        images = ec2.describe_images(ImageIds=[ami]).get("Images", [])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code.startswith("InvalidAMIID"):
            raise ConfigError(f"launch.ami: {ami} not found in this region ({code})") from None
        raise aws_error("ec2 describe-images", exc) from None
    except BotoCoreError as exc:
        raise aws_error("ec2 describe-images", exc) from None
    if not images:
        raise ConfigError(f"launch.ami: {ami} not found in this region")
    return images[0].get("RootDeviceName") or "/dev/xvda"


def execute(ec2: Any, request: LaunchRequest) -> list[Launched]:
    """Make one request, trying its instance types in order while the error is capacity."""
    last: ClientError | None = None
    for instance_type in request.instance_types:
        try:
            reply = ec2.run_instances(InstanceType=instance_type, **request.params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in CAPACITY_CODES:
                last = exc
                continue
            raise aws_error(f"ec2 run-instances (host {request.host_indices[0]})", exc) from None
        except BotoCoreError as exc:
            raise aws_error("ec2 run-instances", exc) from None
        return _tag_launch_indices(ec2, request, reply.get("Instances", []), instance_type)
    assert last is not None
    raise aws_error(
        f"ec2 run-instances (host {request.host_indices[0]}): no capacity for "
        f"{', '.join(request.instance_types)}",
        last,
    )


def _tag_launch_indices(
    ec2: Any, request: LaunchRequest, instances: list[dict[str, Any]], instance_type: str
) -> list[Launched]:
    out = []
    for inst in instances:
        if len(request.host_indices) == 1:
            index = request.host_indices[0]
        else:
            index = int(inst.get("AmiLaunchIndex", 0))
            try:
                ec2.create_tags(
                    Resources=[inst["InstanceId"]],
                    Tags=[
                        {"Key": HOST_INDEX_TAG, "Value": str(index)},
                        {"Key": "Name", "Value": f"{_name(request)}-{index}"},
                    ],
                )
            except (ClientError, BotoCoreError) as exc:
                raise aws_error("ec2 create-tags", exc) from None
        lifecycle = inst.get("InstanceLifecycle", "on-demand")
        out.append(Launched(inst["InstanceId"], index, instance_type, lifecycle))
    return out


def _name(request: LaunchRequest) -> str:
    for spec in request.params["TagSpecifications"]:
        for tag in spec["Tags"]:
            if tag["Key"] == "Name":
                return tag["Value"]
    return "decon"


def launch_fleet(
    cfg: Config,
    count: int,
    *,
    ec2: Any,
    only_missing: bool = False,
    instance_types: list[str] | None = None,
    spot: bool | None = None,
    dry_run: bool = False,
    renderer: Renderer = default_renderer,
    runs_area: Any = None,
    now: dt.datetime | None = None,
) -> tuple[list[LaunchRequest], list[Launched]]:
    """Plan and (unless `dry_run`) make the launch; returns the requests and what started."""
    check_launch_config(cfg)
    indices = list(range(count))
    if only_missing:
        indices = _missing(cfg, count, ec2, runs_area, now)
    if dry_run:
        return build_requests(
            cfg, count, indices, instance_types=instance_types, spot=spot, renderer=renderer
        ), []
    if not indices:
        return [], []
    root = root_device_name(ec2, cfg.launch.ami)  # a missing AMI fails before anything starts
    requests = build_requests(
        cfg,
        count,
        indices,
        instance_types=instance_types,
        spot=spot,
        renderer=renderer,
        root_device=root,
    )
    launched: list[Launched] = []
    for request in requests:
        launched.extend(execute(ec2, request))
    return requests, launched


def _missing(
    cfg: Config, count: int, ec2: Any, runs_area: Any, now: dt.datetime | None
) -> list[int]:
    from decon.fleet.status import collect  # status imports nothing from launch

    area = runs_area if runs_area is not None else open_storage(cfg.output_prefix("runs"), cfg.aws)
    health = collect(cfg, ec2, area, now or dt.datetime.now(dt.UTC), host_count=count)
    counts = {h.latest.host_count for h in health.hosts if h.latest and h.latest.host_count}
    if counts - {count}:
        raise UserError(
            f"--count {count}: earlier runs of job {cfg.job.id} used host count "
            f"{', '.join(map(str, sorted(counts)))}; a different count reshards the input"
        )
    return missing_hosts(health)


def launch_group(
    cfg: Config,
    count: int,
    *,
    ec2: Any,
    autoscaling: Any,
    instance_types: list[str] | None = None,
    spot: bool | None = None,
    dry_run: bool = False,
    renderer: Renderer = default_renderer,
) -> GroupRequest:
    """Queue distribution: the job's launch template and Auto Scaling group of `count` nodes
    (every node renders the same user-data, naming the group it protects itself in)."""
    check_launch_config(cfg)
    name = group_name(cfg.job.id)
    node_run = dataclasses.replace(cfg.run, distribution="queue", autoscaling_group=name)
    node_cfg = dataclasses.replace(cfg, run=node_run)
    types = list(
        dict.fromkeys(instance_types or [cfg.launch.instance_type, *cfg.launch.instance_types])
    )
    tags = {"Name": name, JOB_TAG: cfg.job.id, **cfg.launch.tags}
    root = None if dry_run else root_device_name(ec2, cfg.launch.ami)
    params = instance_params(node_cfg, renderer(node_cfg, 0, 1), tags, root)
    request = build_group_request(
        cfg, count, params, types, cfg.launch.spot if spot is None else spot
    )
    if not dry_run:
        create_group(ec2, autoscaling, request)
    return request


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the job file (YAML)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--count", type=int, help="number of hosts N")
    size.add_argument(
        "--add",
        type=int,
        metavar="K",
        help="start K more nodes for a running queue job",
    )
    parser.add_argument(
        "--instance-type",
        nargs="+",
        metavar="T",
        help="instance types, first choice first (default: launch.instance_type[s])",
    )
    market = parser.add_mutually_exclusive_group()
    market.add_argument(
        "--spot",
        dest="spot",
        action="store_true",
        default=None,
        help="spot instances (default: launch.spot, true)",
    )
    market.add_argument(
        "--on-demand",
        dest="spot",
        action="store_false",
        help="on-demand instances: for runs that must not be interrupted",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the requests; start nothing")
    parser.add_argument(
        "--only-missing",
        action="store_true",
        help="start only hosts whose shard is unfinished and that have no live instance",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace, renderer: Renderer = default_renderer) -> int:
    cfg = load_config(args.config)
    require_job(cfg, "launch", also=("launch.ami",))
    count = args.add if args.add is not None else args.count
    if count < 1:
        raise UserError(f"--{'add' if args.add is not None else 'count'}: must be >= 1")
    if cfg.run.fleet_queued:
        return run_queued(cfg, args, count, renderer)
    if args.add is not None:
        raise UserError("--add: not with run.distribution: shard (shards cannot grow)")
    ec2 = ec2_client(cfg.aws)
    requests, launched = launch_fleet(
        cfg,
        count,
        ec2=ec2,
        only_missing=args.only_missing,
        instance_types=args.instance_type,
        spot=args.spot,
        dry_run=args.dry_run,
        renderer=renderer,
    )
    if args.json:
        out = {
            "job_id": cfg.job.id,
            "dry_run": args.dry_run,
            "requests": [r.describe() for r in requests],
            "launched": [vars(x) for x in launched],
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not requests:
        print(f"job {cfg.job.id}: nothing to launch (every host is finished or has an instance)")
        return 0
    if args.dry_run:
        for r in requests:
            print(
                f"would launch host {_hosts(r)} of {r.host_count}: "
                + json.dumps(r.describe()["params"], sort_keys=True)
            )
        return 0
    for x in launched:
        print(
            f"launched host {x.host_index} of {count}: {x.instance_id} "
            f"{x.instance_type} {x.lifecycle}"
        )
    print(
        f"job {cfg.job.id}: {len(launched)} instance(s) started; "
        f"watch with: decon status --config {args.config} --watch"
    )
    return 0


def run_queued(cfg: Config, args: argparse.Namespace, count: int, renderer: Renderer) -> int:
    """Queue distribution: fill the queue, then start the group (or grow it with --add)."""
    if args.only_missing:
        raise UserError("--only-missing: for run.distribution: shard (a queue job: use --add)")
    autoscaling = autoscaling_client(cfg.aws)
    if args.add is not None and not args.dry_run:
        desired = resize_group(autoscaling, cfg.job.id, more=count)
        print(f"job {cfg.job.id}: desired capacity now {desired}")
        return 0
    ec2 = ec2_client(cfg.aws)
    exists = not args.dry_run and describe_group(autoscaling, cfg.job.id) is not None
    check_launch_config(cfg)  # nothing is enqueued for a launch that cannot start
    if not args.dry_run:
        root_device_name(ec2, cfg.launch.ami)
        fill = fill_job_queue(cfg)
        if fill.already_queued:
            print(f"queue {fill.url}: holds {fill.already_queued} message(s); nothing enqueued")
        else:
            print(f"queue {fill.url}: {fill.enqueued} file(s) enqueued")
        if fill.collisions:
            print(f"  {fill.collisions} input(s) left out: same output basename as another")
    if exists:  # a relaunch of the job (new files, or after a stop): the same group, resized
        desired = resize_group(autoscaling, cfg.job.id, to=count)
        print(f"job {cfg.job.id}: desired capacity now {desired}")
        return 0
    request = launch_group(
        cfg,
        count,
        ec2=ec2,
        autoscaling=autoscaling,
        instance_types=args.instance_type,
        spot=args.spot,
        dry_run=args.dry_run,
        renderer=renderer,
    )
    if args.json or args.dry_run:
        print(json.dumps(request.describe(), indent=2, sort_keys=True))
        return 0
    print(
        f"job {cfg.job.id}: Auto Scaling group {request.group['AutoScalingGroupName']} "
        f"with desired capacity {count}; watch with: decon status --config {args.config} --watch"
    )
    return 0


def _hosts(request: LaunchRequest) -> str:
    h = request.host_indices
    return str(h[0]) if len(h) == 1 else f"{h[0]}..{h[-1]}"
