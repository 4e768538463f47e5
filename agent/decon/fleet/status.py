"""`decon status`: one table of a job's hosts from EC2 (instances) and S3 (runs), and a verdict."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, replace
from typing import Any

from decon.config import Config, load_config
from decon.errors import UserError
from decon.fleet.group import describe_group
from decon.fleet.health import (
    ATTENTION,
    FINISHED,
    JobHealth,
    RunFacts,
    SentinelFacts,
    job_health,
    parse_run_id,
    queue_job_health,
)
from decon.fleet.instances import autoscaling_client, ec2_client, job_instances
from decon.jobrun.heartbeat import HEARTBEAT_NAME, HeartbeatRecord
from decon.jobrun.workqueue import QueueSummary, queue_summary
from decon.node.finalizer import LOG_NAME
from decon.node.sentinel import FAILED_UPLOAD, SUCCESS, Sentinel
from decon.storage import Storage, StorageError, open_storage

SENTINEL_NAMES = (SUCCESS, FAILED_UPLOAD)  # _SUCCESS wins when both exist
EXIT_CODES = {FINISHED: 0, "running": 0, ATTENTION: 3}


def collect_runs(runs_area: Storage) -> list[RunFacts]:
    """Every run under the runs prefix with its heartbeat and sentinel (unreadable ones noted)."""
    keys: dict[str, set[str]] = {}
    for obj in runs_area.list(""):
        run_id, _, name = obj.key.partition("/")
        if name:
            keys.setdefault(run_id, set()).add(name)
    runs = []
    for run_id, names in sorted(keys.items()):
        started, instance_id = parse_run_id(run_id)
        run = RunFacts(run_id, started, instance_id)
        if HEARTBEAT_NAME in names:
            try:
                run.heartbeat = HeartbeatRecord.from_json(
                    runs_area.get_bytes(f"{run_id}/{HEARTBEAT_NAME}")
                )
            except ValueError as exc:
                run.problems.append(f"{HEARTBEAT_NAME}: {exc}")
        for name in SENTINEL_NAMES:
            if name in names:
                key = f"{run_id}/{name}"
                try:
                    sentinel = Sentinel.from_json(runs_area.get_bytes(key), runs_area.uri(key))
                    run.sentinel = SentinelFacts.from_sentinel(sentinel)
                    break
                except StorageError as exc:
                    if exc.code == "NoSuchKey":  # removed since the listing
                        continue
                    run.problems.append(f"{name}: {exc}")
                except ValueError as exc:
                    run.problems.append(f"{name}: {runs_area.uri(key)}: {exc}")
        runs.append(run)
    return runs


def collect(
    cfg: Config,
    ec2: Any,
    runs_area: Storage,
    now: dt.datetime,
    *,
    host_count: int | None = None,
    stale_seconds: float = 600.0,
    boot_grace_seconds: float = 900.0,
) -> JobHealth:
    """Read EC2 and S3 once and judge the job."""
    instances = job_instances(ec2, cfg.job.id) if ec2 is not None else []
    return job_health(
        cfg.job.id,
        collect_runs(runs_area),
        instances,
        now,
        host_count=host_count,
        stale_seconds=stale_seconds,
        boot_grace_seconds=boot_grace_seconds,
    )


def render(health: JobHealth, now: dt.datetime) -> str:
    """The human table: one line per host, its instances, totals and the verdict."""
    rows = [
        (
            "host",
            "instance",
            "state",
            "type",
            "launched",
            "run",
            "beat",
            "files",
            "cont",
            "fail",
            "sentinel",
            "verdict",
        )
    ]
    for host in health.hosts:
        run = host.latest
        files = run.files if run else {}
        insts = host.instances or [None]
        for n, inst in enumerate(insts):
            first = n == 0
            rows.append(
                (
                    str(host.host_index) if first else "",
                    inst.instance_id if inst else "-",
                    inst.state if inst else "-",
                    inst.instance_type if inst else "-",
                    inst.launch_time.astimezone(dt.UTC).strftime("%m-%d %H:%MZ") if inst else "-",
                    (run.run_id if run else "-") if first else "",
                    _age(run, now) if first else "",
                    f"{files.get('done', 0)}/{files.get('assigned', 0)}" if first and run else "",
                    str(files.get("contaminated", 0)) if first and run else "",
                    str(files.get("failed", 0)) if first and run else "",
                    _sentinel(run) if first else "",
                    f"{host.verdict}: {host.why}" if first else "",
                )
            )
    for inst in health.stray_instances:
        rows.append(
            (
                "?",
                inst.instance_id,
                inst.state,
                inst.instance_type,
                inst.launch_time.astimezone(dt.UTC).strftime("%m-%d %H:%MZ"),
                "",
                "",
                "",
                "",
                "",
                "",
                "instance without a valid decon:host-index tag",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    t = health.totals
    lines.append("")
    lines.append(
        f"totals: files {t.get('done', 0)}/{t.get('assigned', 0)} done, "
        f"{t.get('contaminated', 0)} contaminated, {t.get('failed', 0)} failed"
    )
    for problem in health.problems:
        lines.append(f"warning: {problem}")
    lines.append(f"job {health.job_id}: {health.verdict.upper()}: {health.summary}")
    return "\n".join(lines)


def to_json(health: JobHealth, now: dt.datetime) -> dict[str, Any]:
    """The machine-readable form (`--json`)."""

    def run_json(run: RunFacts | None) -> dict[str, Any] | None:
        if run is None:
            return None
        return {
            "run_id": run.run_id,
            "instance_id": run.instance_id,
            "heartbeat_age_seconds": run.age_seconds(now) if run.heartbeat else None,
            "heartbeat_state": run.heartbeat.state if run.heartbeat else None,
            "files": run.files,
            "sentinel": asdict(run.sentinel) if run.sentinel else None,
        }

    def inst_json(inst: Any) -> dict[str, Any]:
        data = asdict(inst)
        data["launch_time"] = inst.launch_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return data

    return {
        "job_id": health.job_id,
        "verdict": health.verdict,
        "summary": health.summary,
        "host_count": health.host_count,
        "totals": health.totals,
        "hosts": [
            {
                "host_index": h.host_index,
                "verdict": h.verdict,
                "why": h.why,
                "latest_run": run_json(h.latest),
                "instances": [inst_json(i) for i in h.instances],
            }
            for h in health.hosts
        ],
        "stray_instances": [inst_json(i) for i in health.stray_instances],
        "problems": health.problems,
    }


def _age(run: RunFacts | None, now: dt.datetime) -> str:
    if run is None or run.heartbeat is None:
        return "-"
    age = run.age_seconds(now)
    return "?" if age is None else f"{int(age)}s" if age < 90 else f"{age / 60:.0f}m"


def _sentinel(run: RunFacts | None) -> str:
    if run is None or run.sentinel is None:
        return "-"
    name = "_SUCCESS" if run.sentinel.status == "success" else "_FAILED_UPLOAD"
    return f"{name}({run.sentinel.completion_status})"


def group_facts(group: dict[str, Any]) -> dict[str, Any]:
    states = [i.get("LifecycleState", "?") for i in group.get("Instances", [])]
    return {
        "name": group["AutoScalingGroupName"],
        "desired": group["DesiredCapacity"],
        "instances": len(states),
        "in_service": states.count("InService"),
    }


def group_line(group: dict[str, Any]) -> str:
    g = group_facts(group)
    return (
        f"group {g['name']}: desired {g['desired']}, {g['instances']} instances "
        f"({g['in_service']} in service)"
    )


def job_queue(cfg: Config) -> QueueSummary | None:
    """The job's queue, or None for a shard job (with no `run.distribution`, a job whose queue
    does not exist was launched as shards)."""
    if not cfg.run.fleet_queued:
        return None
    try:
        return queue_summary(cfg)
    except UserError:
        if cfg.run.distribution:
            raise
        return None


def dead_file_errors(runs_area: Storage, files: list[str]) -> dict[str, str]:
    """The last `FILE_FAILED` error of each file, from the uploaded run logs."""
    wanted = {f"file={rel}": rel for rel in files}
    found: dict[tuple[str, str], str] = {}  # (rel, run id) -> error; run ids sort by time
    if not wanted:
        return {}
    for obj in runs_area.list(""):
        run_id, _, name = obj.key.partition("/")
        if name != LOG_NAME:
            continue
        try:
            text = runs_area.get_bytes(obj.key).decode("utf-8", "replace")
        except StorageError:
            continue
        for line in text.splitlines():
            if " FILE_FAILED " not in line or " error=" not in line:
                continue
            for needle, rel in wanted.items():
                if f" {needle} " in line:
                    found[(rel, run_id)] = line.split(" error=", 1)[1].strip().strip('"')
    return {rel: error for (rel, _), error in sorted(found.items())}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the job file (YAML)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=30.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 30) until finished or Ctrl-C",
    )
    parser.add_argument(
        "--max-refreshes",
        type=int,
        default=1440,
        help="with --watch: stop after this many refreshes (default 1440)",
    )
    parser.add_argument("--count", type=int, help="host count (default: from runs and tags)")
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=10.0,
        help="a run without a sentinel whose heartbeat is older needs attention (default 10)",
    )
    parser.add_argument(
        "--boot-minutes",
        type=float,
        default=15.0,
        help="an instance with no run after this long needs attention (default 15)",
    )
    parser.add_argument("--no-ec2", action="store_true", help="S3 only (no EC2 calls)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.count is not None and args.count < 1:
        raise UserError("--count: must be >= 1")
    if args.watch is not None and args.watch < 1:
        raise UserError("--watch: SECONDS must be >= 1")
    runs_area = open_storage(cfg.output_prefix("runs"), cfg.aws)
    ec2 = None if args.no_ec2 else ec2_client(cfg.aws)

    def once() -> JobHealth:
        now = dt.datetime.now(dt.UTC)
        queue = job_queue(cfg)
        if queue is not None:
            queue = replace(queue, errors=dead_file_errors(runs_area, queue.dead_files))
            health = queue_job_health(
                cfg.job.id,
                collect_runs(runs_area),
                job_instances(ec2, cfg.job.id) if ec2 is not None else [],
                now,
                waiting=queue.counts.visible,
                in_flight=queue.counts.in_flight,
                dead=queue.counts.dead,
                stale_seconds=args.stale_minutes * 60,
            )
        else:
            health = collect(
                cfg,
                ec2,
                runs_area,
                now,
                host_count=args.count,
                stale_seconds=args.stale_minutes * 60,
                boot_grace_seconds=args.boot_minutes * 60,
            )
        group = None
        if queue is not None and ec2 is not None:
            group = describe_group(autoscaling_client(cfg.aws), cfg.job.id)
        if args.json:
            data = to_json(health, now)
            if queue is not None:
                data["queue"] = queue.to_json()
            if group is not None:
                data["group"] = group_facts(group)
            print(json.dumps(data, sort_keys=True), flush=True)
        else:
            if args.watch is not None and sys.stdout.isatty():
                print("\033[H\033[2J", end="")
            print(render(health, now), flush=True)
            if queue is not None:
                print(queue.render(), flush=True)
            if group is not None:
                print(group_line(group), flush=True)
        return health

    health = once()
    refreshes = 0
    try:
        while (
            args.watch is not None and health.verdict != FINISHED and refreshes < args.max_refreshes
        ):
            time.sleep(args.watch)
            refreshes += 1
            if not args.json:
                print()
            health = once()
    except KeyboardInterrupt:
        return 0
    return EXIT_CODES.get(health.verdict, 0)
