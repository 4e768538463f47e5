"""The facts `decon status` collects about a job, and the verdict over them (pure, no I/O).

Per host index the latest run (by the time in its RUN_ID) decides, with the job's EC2
instances as a second witness: a fresh heartbeat means running even when the instances are
not visible (e.g. started from a launch template without decon's tags).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from decon.jobrun.heartbeat import HeartbeatRecord
from decon.node.sentinel import Sentinel

LIVE_STATES = ("pending", "running")
RUN_ID_RE = re.compile(r"^run-(\d{8})-(\d{6})Z-(.+)$")

RUNNING = "running"
FINISHED = "finished"
ATTENTION = "needs attention"


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    state: str  # pending | running | shutting-down | terminated | stopping | stopped
    instance_type: str
    launch_time: dt.datetime
    host_index: int | None  # from the decon:host-index tag
    host_count: int | None = None  # from the decon:host-count tag
    lifecycle: str = "on-demand"  # spot | on-demand

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class SentinelFacts:
    """The fields of a `_SUCCESS` / `_FAILED_UPLOAD` body that status needs (SPEC section 7)."""

    status: str  # success | failed_upload
    completion_status: str  # normal | interrupted
    host_index: int | None
    host_count: int | None
    files: dict[str, int]
    finalized_at: str = ""
    reason: str = ""
    last_error: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentinelFacts:
        """Raises ValueError when `data` is not a sentinel."""
        if not isinstance(data, dict) or data.get("status") not in ("success", "failed_upload"):
            raise ValueError("not a decon sentinel (status is not success or failed_upload)")
        files = data.get("files") if isinstance(data.get("files"), dict) else {}
        return cls(
            status=data["status"],
            completion_status=str(data.get("completion_status", "")),
            host_index=_int_or_none(data.get("host_index")),
            host_count=_int_or_none(data.get("host_count")),
            files={k: v for k, v in files.items() if isinstance(v, int)},
            finalized_at=str(data.get("finalized_at", "")),
            reason=str(data.get("reason", "")),
            last_error=data.get("last_error"),
        )

    @classmethod
    def from_sentinel(cls, sentinel: Sentinel) -> SentinelFacts:
        """The facts of a parsed sentinel; ValueError when its status is not a sentinel status."""
        return cls.from_dict(asdict(sentinel))

    @property
    def done_normally(self) -> bool:
        return self.status == "success" and self.completion_status == "normal"


@dataclass
class RunFacts:
    run_id: str
    started: dt.datetime | None  # from the RUN_ID
    instance_id: str  # from the RUN_ID
    heartbeat: HeartbeatRecord | None = None
    sentinel: SentinelFacts | None = None
    problems: list[str] = field(default_factory=list)  # unreadable heartbeat/sentinel

    @property
    def host_index(self) -> int | None:
        for src in (self.sentinel, self.heartbeat):
            if src is not None and src.host_index is not None:
                return src.host_index
        return None

    @property
    def host_count(self) -> int | None:
        for src in (self.sentinel, self.heartbeat):
            if src is not None and src.host_count is not None:
                return src.host_count
        return None

    @property
    def files(self) -> dict[str, int]:
        if self.sentinel is not None and self.sentinel.files:
            return dict(self.sentinel.files)
        if self.heartbeat is not None:
            f = self.heartbeat.files
            return {
                "assigned": f.assigned,
                "done": f.done,
                "contaminated": f.contaminated,
                "failed": f.failed,
            }
        return {}

    def sort_key(self) -> tuple[dt.datetime, str]:
        return (self.started or dt.datetime.min.replace(tzinfo=dt.UTC), self.run_id)

    def age_seconds(self, now: dt.datetime) -> float | None:
        """Seconds since the last sign of life: the heartbeat, else the run's start."""
        if self.heartbeat is not None:
            try:
                return self.heartbeat.age_seconds(now)
            except ValueError:
                pass
        if self.started is not None:
            return (now - self.started).total_seconds()
        return None


def parse_run_id(run_id: str) -> tuple[dt.datetime | None, str]:
    """(start time, instance id or host name) from `run-YYYYMMDD-HHMMSSZ-<id>`."""
    m = RUN_ID_RE.match(run_id)
    if not m:
        return None, ""
    try:
        started = dt.datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None, m[3]
    return started, m[3]


@dataclass
class HostHealth:
    host_index: int
    verdict: str  # running | finished | needs attention
    why: str
    latest: RunFacts | None
    instances: list[InstanceFacts]


@dataclass
class JobHealth:
    job_id: str
    host_count: int | None
    verdict: str
    summary: str
    hosts: list[HostHealth]
    totals: dict[str, int]
    stray_instances: list[InstanceFacts]  # no or out-of-range host index tag
    problems: list[str]


def host_health(
    index: int,
    runs: list[RunFacts],
    instances: list[InstanceFacts],
    now: dt.datetime,
    stale_seconds: float,
    boot_grace_seconds: float,
) -> HostHealth:
    """The verdict for one host index from its runs and instances."""
    runs = sorted(runs, key=RunFacts.sort_key)
    latest = runs[-1] if runs else None

    def verdict(v: str, why: str, run: RunFacts | None = latest) -> HostHealth:
        return HostHealth(index, v, why, run, instances)

    done = [r for r in runs if r.sentinel is not None and r.sentinel.done_normally]
    if done:
        return verdict(FINISHED, f"_SUCCESS normal ({done[-1].run_id})", done[-1])
    live = [i for i in instances if i.live]
    run_instances = {r.instance_id for r in runs}
    newer = [
        i
        for i in live
        if i.instance_id not in run_instances
        and (latest is None or latest.started is None or i.launch_time >= latest.started)
    ]
    if newer:
        up = (now - newer[-1].launch_time).total_seconds()
        name = newer[-1].instance_id
        if up <= boot_grace_seconds:
            return verdict(RUNNING, f"{name} starting ({_mins(up)} up, no heartbeat yet)")
        return verdict(ATTENTION, f"{name} up {_mins(up)} but no run has started (install/boot?)")
    if latest is None:
        return verdict(ATTENTION, "no run and no instance: relaunch (decon launch --only-missing)")
    sentinel = latest.sentinel
    if sentinel is not None and sentinel.status == "failed_upload":
        err = f": {sentinel.last_error}" if sentinel.last_error else ""
        return verdict(ATTENTION, f"_FAILED_UPLOAD in {latest.run_id}{err}")
    own = [i for i in live if i.instance_id == latest.instance_id]
    age = latest.age_seconds(now)
    beat = latest.heartbeat
    if sentinel is None and beat is not None and beat.state == "done":
        # `decon run` on its own (no wrapper, no finalizer) ends with this heartbeat
        f = beat.files
        if f.done >= f.assigned and not f.failed:
            return verdict(
                FINISHED, f"heartbeat done, {f.done} of {f.assigned} files (no _SUCCESS)"
            )
        return verdict(
            ATTENTION,
            f"run ended with {f.failed} failed and {f.assigned - f.done} unfinished files: "
            "run it again",
        )
    if sentinel is None:
        if age is not None and age <= stale_seconds:
            return verdict(RUNNING, f"heartbeat {_mins(age)} ago")
        where = f"instance {own[0].instance_id} {own[0].state}" if own else "no live instance"
        beat = f"last heartbeat {_mins(age)} ago" if latest.heartbeat else "no heartbeat"
        return verdict(ATTENTION, f"stale: {beat}, no sentinel, {where}")
    # _SUCCESS with completion_status interrupted (or unknown)
    if own:
        return verdict(RUNNING, f"interrupted run finalized, {own[0].instance_id} still up")
    reason = f" ({sentinel.reason})" if sentinel.reason else ""
    return verdict(
        ATTENTION,
        f"interrupted{reason}, no live instance: relaunch with decon launch --only-missing",
    )


def job_health(
    job_id: str,
    runs: list[RunFacts],
    instances: list[InstanceFacts],
    now: dt.datetime,
    *,
    host_count: int | None = None,
    stale_seconds: float = 600.0,
    boot_grace_seconds: float = 900.0,
    problems: list[str] | None = None,
) -> JobHealth:
    """The job's verdict: finished when every host is, needs attention when any host does."""
    problems = list(problems or [])
    for run in runs:
        problems.extend(f"{run.run_id}: {p}" for p in run.problems)
        if run.host_index is None:
            problems.append(f"{run.run_id}: host index unknown (no heartbeat and no sentinel)")
    count = host_count or _infer_host_count(runs, instances)
    if not count:
        return JobHealth(
            job_id,
            None,
            ATTENTION,
            f"nothing launched for job {job_id} (no runs, no instances)",
            [],
            {},
            list(instances),
            problems,
        )
    seen = {r.host_count for r in runs if r.host_count is not None}
    if seen - {count}:
        problems.append(f"runs were made with host counts {sorted(seen)}; status assumes {count}")
    hosts = []
    for index in range(count):
        hosts.append(
            host_health(
                index,
                [r for r in runs if r.host_index == index],
                [i for i in instances if i.host_index == index],
                now,
                stale_seconds,
                boot_grace_seconds,
            )
        )
    stray = [i for i in instances if i.host_index is None or not 0 <= i.host_index < count]
    totals: dict[str, int] = {}
    for host in hosts:
        for key, value in (host.latest.files if host.latest else {}).items():
            totals[key] = totals.get(key, 0) + value
    attention = [h for h in hosts if h.verdict == ATTENTION]
    if attention:
        verdict = ATTENTION
        summary = "; ".join(f"host {h.host_index}: {h.why}" for h in attention)
    elif all(h.verdict == FINISHED for h in hosts):
        verdict, summary = FINISHED, f"all {count} hosts finished"
    else:
        running = sum(h.verdict == RUNNING for h in hosts)
        verdict, summary = RUNNING, f"{running} of {count} hosts running, the rest finished"
    return JobHealth(job_id, count, verdict, summary, hosts, totals, stray, problems)


def queue_job_health(
    job_id: str,
    runs: list[RunFacts],
    instances: list[InstanceFacts],
    now: dt.datetime,
    *,
    waiting: int,
    in_flight: int,
    dead: int,
    stale_seconds: float = 600.0,
) -> JobHealth:
    """A queue job's verdict: no host owns a shard, so each run is a row (a node) and the queue
    says what is left. Finished when the queue is empty and no node is working; needs
    attention for dead-letter files, a failed upload, or work left with nobody to do it."""
    problems = [f"{r.run_id}: {p}" for r in runs for p in r.problems]
    live = {i.instance_id: i for i in instances if i.live}
    nodes = []
    for n, run in enumerate(sorted(runs, key=RunFacts.sort_key)):
        own = [i for i in instances if i.instance_id == run.instance_id]
        age = run.age_seconds(now)
        sentinel = run.sentinel
        if sentinel is not None and sentinel.status == "failed_upload":
            err = f": {sentinel.last_error}" if sentinel.last_error else ""
            verdict, why = ATTENTION, f"_FAILED_UPLOAD{err}"
        elif sentinel is not None:
            verdict, why = FINISHED, f"_SUCCESS {sentinel.completion_status}"
        elif age is not None and age <= stale_seconds:
            verdict, why = RUNNING, f"heartbeat {_mins(age)} ago"
        else:
            # its files return to the queue after the visibility timeout: nothing to relaunch
            verdict, why = FINISHED, "lost (no sentinel); its files went back to the queue"
        nodes.append(HostHealth(n, verdict, why, run, own))
    totals: dict[str, int] = {}
    for node in nodes:
        for key, value in (node.latest.files if node.latest else {}).items():
            totals[key] = totals.get(key, 0) + value
    working = sum(h.verdict == RUNNING for h in nodes)
    starting = [i for i in live.values() if i.instance_id not in {r.instance_id for r in runs}]
    left = waiting + in_flight
    failed_uploads = [h for h in nodes if h.verdict == ATTENTION]
    if failed_uploads:
        verdict = ATTENTION
        summary = "; ".join(f"{h.latest.run_id}: {h.why}" for h in failed_uploads if h.latest)
    elif left and not working and not starting:
        verdict = ATTENTION
        summary = f"{left} files left in the queue and no node working: decon launch --add K"
    elif left or working:
        verdict = RUNNING
        summary = f"{working} node(s) working, {len(starting)} starting, {left} files left"
        eta = projected_finish(runs, totals.get("done", 0), left, now)
        if eta is not None:
            summary += f", projected finish {eta:%Y-%m-%d %H:%MZ}"
    elif dead:
        verdict, summary = ATTENTION, f"queue drained; {dead} file(s) in the dead-letter queue"
    else:
        verdict, summary = FINISHED, f"queue drained; {totals.get('done', 0)} files done"
    return JobHealth(job_id, None, verdict, summary, nodes, totals, [], problems)


def projected_finish(
    runs: list[RunFacts], done: int, left: int, now: dt.datetime
) -> dt.datetime | None:
    """`now` plus the files left at the rate observed since the first run started."""
    starts = [r.started for r in runs if r.started is not None]
    if not starts or done <= 0:
        return None
    elapsed = (now - min(starts)).total_seconds()
    if elapsed <= 0:
        return None
    return now + dt.timedelta(seconds=left * elapsed / done)


def missing_hosts(health: JobHealth) -> list[int]:
    """Host indices to (re)launch: shard not finished and no pending/running instance."""
    return [
        h.host_index
        for h in health.hosts
        if h.verdict != FINISHED and not any(i.live for i in h.instances)
    ]


def _infer_host_count(runs: list[RunFacts], instances: list[InstanceFacts]) -> int | None:
    counts = [r.host_count for r in runs if r.host_count]
    if counts:
        return max(counts)
    tagged = [i.host_count for i in instances if i.host_count]
    if tagged:
        return max(tagged)
    indices = [i.host_index for i in instances if i.host_index is not None]
    return max(indices) + 1 if indices else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mins(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{int(seconds)}s"
    return f"{seconds / 60:.0f}m"
