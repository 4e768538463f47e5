"""The status verdict as a pure function of collected facts (no AWS)."""

from __future__ import annotations

import datetime as dt

import pytest

from decon.fleet.health import (
    ATTENTION,
    FINISHED,
    RUNNING,
    InstanceFacts,
    RunFacts,
    SentinelFacts,
    job_health,
    missing_hosts,
    parse_run_id,
)
from decon.jobrun.heartbeat import FileCounts, HeartbeatRecord

NOW = dt.datetime(2026, 11, 23, 15, 0, 0, tzinfo=dt.UTC)


def ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


def run(index, started_min, instance="i-1", beat_min=None, sentinel=None, count=2, state="running"):
    started = ago(started_min)
    rid = f"run-{started:%Y%m%d-%H%M%S}Z-{instance}"
    r = RunFacts(rid, started, instance)
    if beat_min is not None:
        r.heartbeat = HeartbeatRecord(
            rid,
            "job",
            instance,
            index,
            count,
            ago(beat_min).strftime("%Y-%m-%dT%H:%M:%SZ"),
            state=state,
            files=FileCounts(10, 10, 2, 0) if state == "done" else FileCounts(10, 5, 2, 1),
        )
    if sentinel is not None:
        status = "failed_upload" if sentinel == "failed_upload" else "success"
        completion = "normal" if sentinel == "normal" else "interrupted"
        r.sentinel = SentinelFacts(
            status,
            completion,
            index,
            count,
            {"assigned": 10, "done": 10, "contaminated": 3, "failed": 0},
            reason="spot notice",
            last_error="AccessDenied",
        )
    return r


def inst(index, state="running", instance="i-1", up_min=5):
    return InstanceFacts(instance, state, "m5.large", ago(up_min), index, 2, "spot")


def one_host(runs, instances, **kw):
    health = job_health("job", runs, instances, NOW, host_count=1, **kw)
    return health.hosts[0]


@pytest.mark.parametrize(
    "runs, instances, verdict, why",
    [
        ([run(0, 30, beat_min=1)], [inst(0)], RUNNING, "heartbeat"),
        ([run(0, 30, beat_min=1)], [], RUNNING, "heartbeat"),  # launched outside decon launch
        ([run(0, 60, beat_min=30)], [inst(0)], ATTENTION, "stale"),
        ([run(0, 60, beat_min=30)], [], ATTENTION, "no live instance"),
        ([run(0, 60, beat_min=60, sentinel=None)], [], ATTENTION, "last heartbeat 60m ago"),
        ([run(0, 60, beat_min=50, sentinel="normal")], [], FINISHED, "_SUCCESS"),
        ([run(0, 60, beat_min=50, sentinel="failed_upload")], [inst(0)], ATTENTION, "AccessDenied"),
        (
            [run(0, 60, beat_min=50, sentinel="interrupted")],
            [inst(0, "terminated")],
            ATTENTION,
            "interrupted (spot notice)",
        ),
        (
            [run(0, 60, beat_min=50, sentinel="interrupted")],
            [inst(0, "running")],
            RUNNING,
            "still up",
        ),
        ([], [], ATTENTION, "no run and no instance"),
        # a plain `decon run` (no finalizer): its last heartbeat says done
        ([run(0, 30, beat_min=1, state="done")], [], FINISHED, "heartbeat done, 10 of 10"),
        ([run(0, 30, beat_min=100, state="done")], [inst(0)], FINISHED, "no _SUCCESS"),
        ([], [inst(0, up_min=3)], RUNNING, "starting"),
        ([], [inst(0, up_min=40)], ATTENTION, "no run has started"),
        # interrupted, then relaunched: the new instance has no run yet
        (
            [run(0, 60, beat_min=50, sentinel="interrupted")],
            [inst(0, "terminated", up_min=61), inst(0, instance="i-2", up_min=2)],
            RUNNING,
            "i-2 starting",
        ),
        # an older normal success wins over a later stray run
        (
            [run(0, 90, sentinel="normal"), run(0, 10, instance="i-2", beat_min=9)],
            [],
            FINISHED,
            "_SUCCESS",
        ),
    ],
)
def test_host_verdicts(runs, instances, verdict, why):
    host = one_host(runs, instances, stale_seconds=600, boot_grace_seconds=900)
    assert host.verdict == verdict and why in host.why


def test_run_without_heartbeat_or_sentinel_is_a_problem():
    health = job_health("job", [run(0, 60)], [], NOW, host_count=1)
    assert any("host index unknown" in p for p in health.problems)
    assert health.hosts[0].why.startswith("no run and no instance")


def test_latest_run_decides():
    # an old failed upload, then a newer healthy run
    host = one_host(
        [run(0, 120, sentinel="failed_upload"), run(0, 20, instance="i-2", beat_min=1)], []
    )
    assert host.verdict == RUNNING and host.latest.instance_id == "i-2"


def test_job_verdicts_totals_and_missing():
    runs = [run(0, 60, beat_min=50, sentinel="normal"), run(1, 30, instance="i-2", beat_min=1)]
    health = job_health("job", runs, [inst(1, instance="i-2")], NOW)
    assert health.host_count == 2 and health.verdict == RUNNING
    assert health.totals == {"assigned": 20, "done": 15, "contaminated": 5, "failed": 1}
    assert missing_hosts(health) == []
    runs[1].sentinel = SentinelFacts("success", "normal", 1, 2, {"done": 10})
    assert job_health("job", runs, [], NOW).verdict == FINISHED
    runs[1].sentinel = SentinelFacts("success", "interrupted", 1, 2, {"done": 4})
    health = job_health("job", runs, [], NOW)
    assert health.verdict == ATTENTION and "host 1: interrupted" in health.summary
    assert missing_hosts(health) == [1]


def test_nothing_launched_and_stray_instances():
    health = job_health("job", [], [], NOW)
    assert health.verdict == ATTENTION and "nothing launched" in health.summary
    untagged = InstanceFacts("i-9", "running", "m5.large", ago(1), None)
    health = job_health("job", [], [inst(0), untagged], NOW, host_count=1)
    assert health.stray_instances == [untagged]


def test_host_count_from_tags_and_mismatch_warning():
    health = job_health("job", [], [inst(0)], NOW)
    assert health.host_count == 2 and len(health.hosts) == 2  # decon:host-count tag
    health = job_health("job", [run(0, 5, beat_min=1, count=3)], [], NOW, host_count=2)
    assert any("host counts [3]" in p for p in health.problems)


def test_parse_run_id_and_sentinel():
    assert parse_run_id("run-20261123-143012Z-i-0abc") == (
        dt.datetime(2026, 11, 23, 14, 30, 12, tzinfo=dt.UTC),
        "i-0abc",
    )
    assert parse_run_id("nonsense") == (None, "")
    with pytest.raises(ValueError):
        SentinelFacts.from_dict({"status": "weird"})
    s = SentinelFacts.from_dict(
        {
            "status": "success",
            "completion_status": "normal",
            "host_index": 1,
            "files": {"done": 3, "x": "no"},
        }
    )
    assert s.done_normally and s.files == {"done": 3} and s.host_count is None


def queue_health(runs, instances=(), waiting=0, in_flight=0, dead=0):
    from decon.fleet.health import queue_job_health

    return queue_job_health(
        "job", list(runs), list(instances), NOW, waiting=waiting, in_flight=in_flight, dead=dead
    )


def test_queue_job_is_finished_when_drained_and_nobody_works() -> None:
    lost = run(0, 50, instance="i-lost", beat_min=40)  # SIGKILLed: its files were redone
    health = queue_health([run(0, 60, "i-a", sentinel="normal"), lost])
    assert health.verdict == FINISHED and "queue drained" in health.summary
    assert [h.why for h in health.hosts][1].startswith("lost (no sentinel)")


def test_queue_job_running_projects_its_finish() -> None:
    # 5 files done in 30 minutes by one node, 10 left: an hour more.
    health = queue_health([run(0, 30, "i-a", beat_min=1)], waiting=8, in_flight=2)
    assert health.verdict == RUNNING
    assert "1 node(s) working" in health.summary
    assert f"projected finish {NOW + dt.timedelta(minutes=60):%Y-%m-%d %H:%MZ}" in health.summary


def test_queue_job_needs_attention_with_work_and_no_node_or_dead_letters() -> None:
    idle = queue_health([run(0, 60, "i-a", sentinel="interrupted")], waiting=3)
    assert idle.verdict == ATTENTION and "decon launch --add" in idle.summary
    starting = queue_health([], [inst(None, instance="i-new", up_min=1)], waiting=3)
    assert starting.verdict == RUNNING
    dead = queue_health([run(0, 60, "i-a", sentinel="normal")], dead=1)
    assert dead.verdict == ATTENTION and "dead-letter" in dead.summary
    failed = queue_health([run(0, 60, "i-a", sentinel="failed_upload")])
    assert failed.verdict == ATTENTION and "_FAILED_UPLOAD: AccessDenied" in failed.summary
