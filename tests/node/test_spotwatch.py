"""The spot watcher against the fake IMDSv2 server, with real processes for the wrapper
stand-in, the hooks and the finalizer stub (each records what happened to it)."""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import yaml

from conftest import make_config
from decon.config import Config, config_to_dict
from decon.eventlog import EventLog
from decon.node.imds import ImdsClient
from decon.node.notify import Notifier
from decon.node.spotwatch import SpotWatcher, WatchEdges, running_wrapper_pid
from decon.node.state import NodeState, Outcome
from fakes.imds import FakeImds

VENV_BIN = Path(sys.executable).parent


def utc_in(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class NotifySink:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.

    A reader thread drains it as systemd would (a full socket queue blocks the sender)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.received: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.received.append(self.sock.recv(65536).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def drain(self) -> list[str]:
        return list(self.received)

    def statuses(self) -> list[str]:
        return [
            line[len("STATUS=") :]
            for msg in self.drain()
            for line in msg.splitlines()
            if line.startswith("STATUS=")
        ]

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self.sock.close()


class Node:
    """A temporary node: config, hooks and finalizer stubs that record their calls."""

    def __init__(
        self, root: Path, imds: FakeImds, sections: dict | None = None, **spot: object
    ) -> None:
        self.root = root
        self.imds = imds
        self.finalizer_calls = root / "finalizer-calls.jsonl"
        self.hook_calls = root / "hook-calls.jsonl"
        finalizer = write_script(
            root / "bin/finalize-stub",
            f"""\
            import json, sys
            with open({str(self.finalizer_calls)!r}, "a") as fh:
                fh.write(json.dumps(sys.argv[1:]) + "\\n")
            """,
        )
        for event in ("on-interrupt", "on-rebalance"):
            write_script(
                root / f"etc/decon/hooks/{event}.d/10-record",
                f"""\
                import json, os
                keys = ("DECON_RUN_ID", "DECON_JOB_ID", "SPOT_ACTION", "SPOT_TIME",
                        "REBALANCE_NOTICE_TIME", "DECON_EVENT")
                with open({str(self.hook_calls)!r}, "a") as fh:
                    fh.write(json.dumps({{k: os.environ.get(k) for k in keys}}) + "\\n")
                """,
            )
        spot_cfg = {
            "imds_endpoint": imds.url,
            "poll_interval_seconds": 0.05,
            "checkpoint_deadline_seconds": 10,
            "deadline_margin_seconds": 15,
            "request_timeout_seconds": 5.0,  # a loaded CI box can be slow; hang tests set 0.2
            "token_ttl_seconds": 300,
        }
        spot_cfg.update(spot)
        sections = dict(sections or {})
        node_cfg = {"finalize_command": [str(finalizer)], **sections.pop("node", {})}
        self.cfg: Config = make_config(root, node=node_cfg, spot=spot_cfg, **sections)
        self.state = NodeState(self.cfg.node.state_dir)
        self.state.start_run("i-0fake0000000000001")
        self.sink = NotifySink(root / "notify.sock")
        self.log_stream = io.StringIO()

    def write_config(self) -> Path:
        path = Path(self.cfg.node.config_path)
        path.write_text(yaml.safe_dump(config_to_dict(self.cfg)))
        return path

    def watcher(self, env: dict[str, str] | None = None, **kwargs: object) -> SpotWatcher:
        spot = self.cfg.spot
        client = ImdsClient(
            spot.imds_endpoint, spot.token_ttl_seconds, spot.request_timeout_seconds
        )
        log = EventLog(self.cfg.node.log_file, self.log_stream)
        edges = WatchEdges(env=env or {})
        with mock.patch.dict(os.environ, {"NOTIFY_SOCKET": self.sink.path}):
            notifier = Notifier()  # sdnotify takes the socket from the environment
        return SpotWatcher(self.cfg, client, log, notifier, edges, **kwargs)

    def events(self, state: str | None = None) -> list[str]:
        try:
            lines = Path(self.cfg.node.log_file).read_text().splitlines()
        except FileNotFoundError:
            return []
        marker = f"STATE: {state}" if state else "STATE: "
        return [
            line
            for line in lines
            if marker in line and (state is None or line.split(marker)[1][:1] in ("", " "))
        ]

    def finalizer_argv(self) -> list[list[str]]:
        if not self.finalizer_calls.exists():
            return []
        return [json.loads(line) for line in self.finalizer_calls.read_text().splitlines()]

    def hooks(self) -> list[dict[str, str | None]]:
        if not self.hook_calls.exists():
            return []
        return [json.loads(line) for line in self.hook_calls.read_text().splitlines()]


WRAPPER_STAND_IN = """\
import signal, sys, time
from pathlib import Path
record, linger = Path(sys.argv[1]), float(sys.argv[2])
got = []
def on_term(signum, frame):
    with record.open("a") as fh:
        fh.write(f"{signum}\\n")
    got.append(time.monotonic())
signal.signal(signal.SIGTERM, on_term)
record.with_suffix(".ready").write_text("ready")
while True:
    time.sleep(0.01)
    if got and time.monotonic() - got[0] >= linger:
        sys.exit(143)
"""


class WrapperStandIn:
    """A real process in the wrapper's place: records every signal, exits `linger` s after
    the first SIGTERM (never, with linger=inf)."""

    def __init__(self, root: Path, state: NodeState | None, linger: float = 0.2) -> None:
        self.record = root / f"wrapper-signals-{time.monotonic_ns()}.txt"
        script = write_script(root / "bin/wrapper-stand-in", WRAPPER_STAND_IN)
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.record), str(linger)])
        wait_for(lambda: self.record.with_suffix(".ready").exists())
        if state is not None:
            state.wrapper_pid_file.write_text(f"{self.proc.pid}\n")

    def signals(self) -> list[int]:
        if not self.record.exists():
            return []
        return [int(x) for x in self.record.read_text().split()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def imds():
    with FakeImds() as fake:
        yield fake


@pytest.fixture
def node(node_root, imds):
    made = Node(node_root, imds)
    yield made
    made.sink.close()


@pytest.fixture
def make_node(node_root, imds):
    made: list[Node] = []

    def factory(**spot: object) -> Node:
        made.append(Node(node_root, imds, **spot))
        return made[-1]

    yield factory
    for n in made:
        n.sink.close()


@pytest.fixture
def stand_ins():
    started: list[WrapperStandIn] = []

    def factory(root: Path, state: NodeState | None, linger: float = 0.2) -> WrapperStandIn:
        started.append(WrapperStandIn(root, state, linger))
        return started[-1]

    yield factory
    for s in started:
        s.close()


# --- spot interruption -------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["terminate", "stop", "hibernate"])
def test_instance_action_stops_job_and_finalizes(node, imds, stand_ins, action):
    wrapper = stand_ins(node.root, node.state)
    notice_time = utc_in(120)
    imds.set_instance_action(action, notice_time)
    watcher = node.watcher()
    assert watcher.poll_once()

    notices = node.events("SPOT_NOTICE")
    assert len(notices) == 1 and f"action={action} time={notice_time}" in notices[0]
    assert node.state.notice().action == action
    assert node.state.notice().time == notice_time
    assert wrapper.signals() == [signal.SIGTERM]
    assert wrapper.proc.wait(timeout=5) == 143
    assert len(node.events("WRAPPER_EXITED")) == 1

    (hook,) = node.hooks()
    assert hook == {
        "DECON_RUN_ID": node.state.run_id(),
        "DECON_JOB_ID": "test-job",
        "SPOT_ACTION": action,
        "SPOT_TIME": notice_time,
        "REBALANCE_NOTICE_TIME": None,
        "DECON_EVENT": "on-interrupt",
    }
    deadline = dt.datetime.fromisoformat(notice_time.replace("Z", "+00:00")) - dt.timedelta(
        seconds=15
    )
    (argv,) = node.finalizer_argv()
    assert argv[:6] == [
        "--config",
        node.cfg.node.config_path,
        "--status",
        "interrupted",
        "--deadline",
        deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
    assert argv[6:] == ["--reason", f"spot {action} notice for {notice_time}"]
    assert "returncode=0" in node.events("FINALIZER_EXIT")[0]


def test_notice_handled_once_though_its_time_changes(node, imds, stand_ins):
    wrapper = stand_ins(node.root, node.state)
    watcher = node.watcher()
    for shift in (120, 118, 125, 110):
        imds.set_instance_action("terminate", utc_in(shift))
        assert watcher.poll_once()
    assert len(node.events("SPOT_NOTICE")) == 1
    assert wrapper.signals() == [signal.SIGTERM]
    assert len(node.finalizer_argv()) == 1
    assert len(node.hooks()) == 1


def test_job_that_ignores_sigterm_is_waited_for_at_most_the_checkpoint_deadline(
    make_node, imds, stand_ins
):
    node = make_node(checkpoint_deadline_seconds=0.5)
    wrapper = stand_ins(node.root, node.state, linger=float("inf"))
    imds.set_instance_action("terminate", utc_in(120))
    node.watcher().poll_once()
    assert "wait_seconds=0.5" in node.events("JOB_STOP_REQUESTED")[0]
    assert len(node.events("JOB_STOP_TIMEOUT")) == 1
    assert wrapper.alive() and wrapper.signals() == [signal.SIGTERM]  # signalled once only
    assert len(node.finalizer_argv()) == 1


def test_wait_never_runs_past_notice_time_minus_margin(make_node, imds, stand_ins):
    node = make_node(checkpoint_deadline_seconds=60, deadline_margin_seconds=15)
    stand_ins(node.root, node.state, linger=float("inf"))
    imds.set_instance_action("terminate", utc_in(15.5))  # deadline in <= 0.5 s
    node.watcher().poll_once()
    (line,) = node.events("JOB_STOP_REQUESTED")
    waited = float(line.split("wait_seconds=")[1].split()[0])
    assert 0 <= waited <= 0.5
    assert len(node.finalizer_argv()) == 1


def node_with_real_finalizer(node_root, imds, s3):  # noqa: ANN001, ANN201
    """A node whose watcher runs the real decon-finalize against a moto bucket."""
    s3.client().create_bucket(Bucket="bkt")
    return Node(
        node_root,
        imds,
        sections={
            "node": {"finalize_command": [str(VENV_BIN / "decon-finalize")]},
            "output": {"uri": "s3://bkt/out"},
            "aws": {"endpoint_url": s3.endpoint},
        },
    )


def test_notice_after_the_job_exited_says_the_wrapper_finalizes_and_waits_on_the_lock(
    node_root, imds, stand_ins, s3
):
    """The job exited before the notice and the wrapper's finalizer holds the lock: the wrapper
    is not signalled or waited for, the status says what is going on, and the watcher's own
    (real) finalizer logs that it waited and then skipped."""
    node = node_with_real_finalizer(node_root, imds, s3)
    try:
        node.write_config()
        wrapper = stand_ins(node.root, node.state, linger=float("inf"))
        time.sleep(0.01)
        node.state.write_outcome(Outcome.from_exit(0))  # the job exited after the wrapper began
        lock = Path(node.cfg.node.lock_file)
        holder = os.open(lock, os.O_RDWR | os.O_CREAT)
        fcntl.flock(holder, fcntl.LOCK_EX)  # the wrapper's finalizer at work
        imds.set_instance_action("terminate", utc_in(120))
        watcher = node.watcher()
        poll = threading.Thread(target=watcher.poll_once)
        poll.start()
        try:
            wait_for(lambda: any("waits on the lock" in s for s in node.sink.statuses()))
            wait_for(lambda: node.events("FINALIZE_WAITING"), timeout=30)
            s3.client().put_object(
                Bucket="bkt", Key=f"out/test-job/runs/{node.state.run_id()}/_SUCCESS", Body=b"{}"
            )
        finally:
            os.close(holder)  # the wrapper's finalizer is done
            poll.join(timeout=60)
        assert not poll.is_alive()
        statuses = node.sink.statuses()
    finally:
        node.sink.close()
    (skipped,) = node.events("JOB_STOP_SKIPPED")
    assert 'reason="job already exited; the wrapper is finalizing"' in skipped
    assert "exit_code=0" in skipped
    assert wrapper.signals() == [] and wrapper.alive()
    assert not any("waiting for the job to stop" in s for s in statuses)
    assert any(
        s.endswith(f"the wrapper is finalizing; our finalizer waits on the lock {lock}")
        for s in statuses
    )
    launch = node.events("FINALIZE_LAUNCH")[0]
    pid = launch.split("pid=")[1].split()[0]
    # The job's recorded outcome stands (exit 0, normal): no --status interrupted, no --reason.
    assert "--deadline" in launch and "--status" not in launch and "--reason" not in launch
    (exit_line,) = node.events("FINALIZER_EXIT")
    assert f"pid={pid} returncode=0" in exit_line
    assert 'outcome="FINALIZE_SKIPPED' in exit_line and "_SUCCESS already written" in exit_line
    assert "waited_seconds=" in node.events("FINALIZE_LOCKED")[0]
    assert any(s.endswith("finalizer exited 0 (FINALIZE_SKIPPED)") for s in statuses)


def test_when_our_finalizer_gets_the_lock_first_the_job_s_real_outcome_is_kept(
    node_root, imds, stand_ins, s3
):
    """The job exited 0 just before the notice and the wrapper's finalizer has not taken the
    lock yet: the watcher's finalizer writes the sentinel, with the job's outcome (normal),
    not 'interrupted'."""
    node = node_with_real_finalizer(node_root, imds, s3)
    try:
        node.write_config()
        stand_ins(node.root, node.state, linger=float("inf"))
        time.sleep(0.01)
        node.state.write_outcome(Outcome.from_exit(0))
        notice_time = utc_in(120)
        imds.set_instance_action("terminate", notice_time)
        node.watcher().poll_once()
    finally:
        node.sink.close()
    key = f"out/test-job/runs/{node.state.run_id()}/_SUCCESS"
    sentinel = json.loads(s3.client().get_object(Bucket="bkt", Key=key)["Body"].read())
    assert sentinel["completion_status"] == "normal" and sentinel["exit_code"] == 0
    assert sentinel["reason"] == f"job exited 0; spot terminate notice for {notice_time}"
    assert 'outcome="FINALIZE_SUCCESS' in node.events("FINALIZER_EXIT")[0]


def test_an_outcome_left_from_an_earlier_attempt_does_not_pass_for_an_exited_job(
    node, imds, stand_ins
):
    node.state.write_outcome(Outcome.from_exit(143))  # before this wrapper started
    time.sleep(0.01)
    wrapper = stand_ins(node.root, node.state)
    imds.set_instance_action("terminate", utc_in(120))
    node.watcher().poll_once()
    assert wrapper.signals() == [signal.SIGTERM]
    assert len(node.events("WRAPPER_EXITED")) == 1


def test_no_wrapper_running_skips_the_signal_but_finalizes(node, imds):
    imds.set_instance_action("terminate", utc_in(120))
    node.watcher().poll_once()
    assert "no wrapper running" in node.events("JOB_STOP_SKIPPED")[0]
    assert len(node.finalizer_argv()) == 1


def test_stale_pid_file_from_before_a_reboot_is_not_signalled(node, imds, stand_ins):
    bystander = stand_ins(node.root, None, linger=float("inf"))
    pid_file = node.state.wrapper_pid_file
    pid_file.write_text(f"{bystander.proc.pid}\n")
    old = time.time() - 600  # written long before this process started: PID reuse
    os.utime(pid_file, (old, old))
    assert running_wrapper_pid(node.state) is None
    imds.set_instance_action("terminate", utc_in(120))
    node.watcher().poll_once()
    assert bystander.signals() == []
    assert len(node.finalizer_argv()) == 1


def test_failing_finalizer_is_logged_and_the_watcher_goes_on(node, imds):
    node.cfg.node.finalize_command = [
        str(write_script(node.root / "bin/fail", "raise SystemExit(3)"))
    ]
    imds.set_instance_action("terminate", utc_in(120))
    watcher = node.watcher()
    assert watcher.poll_once()
    assert "returncode=3" in node.events("FINALIZER_EXIT")[0]
    assert watcher.poll_once()


# --- rebalance -----------------------------------------------------------------------------------


def test_rebalance_runs_hooks_once_and_never_stops_the_job(node, imds, stand_ins):
    wrapper = stand_ins(node.root, node.state)
    watcher = node.watcher()
    first = utc_in(0)
    imds.set_rebalance(first)
    for _ in range(3):
        assert watcher.poll_once()
    assert len(node.events("REBALANCE_NOTICE")) == 1
    assert node.hooks() == [
        {
            "DECON_RUN_ID": node.state.run_id(),
            "DECON_JOB_ID": "test-job",
            "SPOT_ACTION": None,
            "SPOT_TIME": None,
            "REBALANCE_NOTICE_TIME": first,
            "DECON_EVENT": "on-rebalance",
        }
    ]
    imds.set_rebalance(utc_in(300))  # a new recommendation
    watcher.poll_once()
    assert len(node.events("REBALANCE_NOTICE")) == 2
    assert wrapper.alive() and wrapper.signals() == []
    assert node.finalizer_argv() == []
    assert node.state.notice() is None
    wait_for(lambda: any("rebalance recommended" in s for s in node.sink.statuses()))


# --- IMDS errors ---------------------------------------------------------------------------------


def test_http_500s_are_logged_shown_retried_at_the_interval_and_survived(node, imds):
    watcher = node.watcher()
    assert watcher.poll_once()
    imds.fail_next(100)
    delays = []
    for _ in range(5):
        assert not watcher.poll_once()
        delays.append(watcher.next_delay())
    assert delays == [0.05] * 5  # errors never lengthen the wait
    (error,) = node.events("IMDS_ERROR")  # one line for the transition, not one per poll
    assert "kind=http status=500 path=spot/instance-action" in error
    wait_for(lambda: any(s.startswith("IMDS error (http)") for s in node.sink.statuses()))
    assert all("retry in 0.05s" in s for s in node.sink.statuses() if s.startswith("IMDS error"))
    imds.fail_next(0)
    imds.set_instance_action("terminate", utc_in(120))
    assert watcher.poll_once()
    (ok,) = node.events("IMDS_OK")
    assert "after_errors=5" in ok and 'message="IMDS answering again after 5 errors"' in ok
    log = Path(node.cfg.node.log_file).read_text()
    assert log.index("STATE: IMDS_OK") < log.index("STATE: SPOT_NOTICE")  # before acting on it
    assert watcher.next_delay() == 0.05
    assert len(node.events("SPOT_NOTICE")) == 1
    wait_for(lambda: node.sink.statuses()[-1] == "spot interruption handled; watching")
    assert any(s.endswith("finalizer exited 0 (no outcome logged)") for s in node.sink.statuses())


def test_notice_after_500s_then_a_hang_is_acted_on_within_interval_plus_timeout(make_node, imds):
    """The fault sequence seen on a node: HTTP 500 for a while, then every request hangs, then
    the notice. Real clocks, windows of seconds instead of tens of seconds."""
    interval, timeout = 0.2, 0.3
    node = make_node(poll_interval_seconds=interval, request_timeout_seconds=timeout)
    watcher = node.watcher()
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        wait_for(lambda: imds.count("GET", "/latest/meta-data/spot/instance-action") >= 2)
        imds.fail_next(1_000_000)  # every request, until cleared
        time.sleep(4.0)
        imds.fail_next(0)
        imds.delay_next(1_000_000, 2.5)  # every request hangs 2.5 s
        time.sleep(2.0)
        imds.delay_next(0, 0)
        imds.set_instance_action("terminate", utc_in(120))
        served = time.monotonic()
        wait_for(lambda: node.events("SPOT_NOTICE"), timeout=30)
        reaction = time.monotonic() - served
        wait_for(lambda: node.finalizer_argv())
    finally:
        watcher.edges.stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    time.sleep(max(0.0, served + 2.6 - time.monotonic()))  # hung requests are logged when answered
    slack = 1.0  # a loaded 2-core box (the old backoff left gaps of 3.2 s here)
    assert reaction <= interval + timeout + slack, f"reacted after {reaction:.2f} s"
    # No gap between two looks at the notice path grew past interval + one request timeout.
    looks = sorted(
        r.at for r in imds.requests if r.path == "/latest/meta-data/spot/instance-action"
    )  # a hung request is logged when it is answered: order by arrival
    gaps = [b - a for a, b in zip(looks, looks[1:], strict=False)]
    assert max(gaps) <= interval + timeout + slack, f"longest gap {max(gaps):.2f} s"
    kinds = [e.split("kind=")[1].split()[0] for e in node.events("IMDS_ERROR")]
    assert kinds.count("timeout") == 1 and "http" in kinds[: kinds.index("timeout")]
    (ok,) = node.events("IMDS_OK")
    assert "IMDS answering again after" in ok


def test_errors_are_rate_limited_to_transitions_and_every_nth(node, imds):
    watcher = node.watcher(error_log_every=5)
    imds.stop()
    for _ in range(12):
        watcher.poll_once()
    assert [int(e.split("errors_in_row=")[1].split()[0]) for e in node.events("IMDS_ERROR")] == [
        1,
        5,
        10,
    ]


def test_hanging_imds_is_a_timeout_and_survived(make_node, imds):
    node = make_node(request_timeout_seconds=0.2)
    watcher = node.watcher()
    assert watcher.poll_once()
    imds.delay_next(1, 1.0)
    assert not watcher.poll_once()
    assert "kind=timeout" in node.events("IMDS_ERROR")[0]
    assert watcher.poll_once()


@pytest.mark.parametrize(
    ("body", "kind"),
    [("{not json", "bad_json"), ('{"action": "terminate", "time": "whenever"}', "bad_time")],
)
def test_bad_documents_are_errors_not_notices(node, imds, stand_ins, body, kind):
    wrapper = stand_ins(node.root, node.state)
    imds.bad_json("spot/instance-action", body)
    watcher = node.watcher()
    assert not watcher.poll_once()
    assert f"kind={kind}" in node.events("IMDS_ERROR")[0]
    assert node.events("SPOT_NOTICE") == [] and wrapper.signals() == []
    imds.reset()
    assert watcher.poll_once()


def test_outside_ec2_says_so_and_keeps_watching(make_node, imds):
    imds.stop()  # nothing answers: as on a laptop
    node = make_node(poll_interval_seconds=0.02)
    watcher = node.watcher()
    runner = threading.Thread(target=watcher.run)
    runner.start()
    wait_for(lambda: watcher.errors_in_row >= 4)
    watcher.edges.stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive()
    message = f"IMDS at {imds.url} unreachable: not on EC2? still watching"
    assert message in node.events("IMDS_ERROR")[0]
    assert message in node.log_stream.getvalue()
    wait_for(lambda: any(message in s for s in node.sink.statuses()))
    assert node.events("WATCH_STOP")


def test_unreachable_after_having_worked_is_not_called_outside_ec2(node, imds):
    watcher = node.watcher()
    assert watcher.poll_once()
    imds.stop()
    assert not watcher.poll_once()
    assert "not on EC2" not in node.events("IMDS_ERROR")[0]
    assert "kind=unreachable" in node.events("IMDS_ERROR")[0]


# --- the loop and systemd ------------------------------------------------------------------------


def test_run_loop_ready_watchdog_notice_and_clean_stop(node, imds, stand_ins):
    wrapper = stand_ins(node.root, node.state)
    watcher = node.watcher(env={"WATCHDOG_USEC": "100000"})
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        wait_for(lambda: any("READY=1" in m for m in node.sink.drain()))
        imds.set_instance_action("stop", utc_in(120))
        wait_for(lambda: node.finalizer_argv())
        wait_for(lambda: "spot interruption handled; watching" in node.sink.statuses())
    finally:
        watcher.edges.stop.set()
        runner.join(timeout=5)
    assert not runner.is_alive()
    wait_for(lambda: node.sink.drain()[-1].startswith("STOPPING=1"))
    messages = node.sink.drain()
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages
    assert messages[-1].startswith("STOPPING=1")
    assert wrapper.signals() == [signal.SIGTERM]
    assert len(node.events("SPOT_NOTICE")) == 1 and len(node.finalizer_argv()) == 1


@pytest.mark.parametrize(
    ("env", "pings"),
    [
        ({}, False),
        ({"WATCHDOG_USEC": "100000"}, True),
        ({"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}, False),
    ],
)
def test_watchdog_pings_only_when_systemd_asks_for_them(node, imds, env, pings):
    watcher = node.watcher(env=env)
    watcher.start()
    for _ in range(3):
        watcher.poll_once()
    watcher.shutdown()
    wait_for(lambda: node.sink.drain()[-1:] and node.sink.drain()[-1].startswith("STOPPING=1"))
    assert ("WATCHDOG=1" in node.sink.drain()) is pings


# --- the console script ----------------------------------------------------------------------


def test_console_script_runs_until_sigterm(node, imds, stand_ins):
    wrapper = stand_ins(node.root, node.state)
    config = node.write_config()
    env = {**os.environ, "NOTIFY_SOCKET": node.sink.path}
    proc = subprocess.Popen(
        [str(VENV_BIN / "decon-spot-watch"), "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: any("READY=1" in m for m in node.sink.drain()))
        imds.set_instance_action("terminate", utc_in(120))
        wait_for(lambda: node.finalizer_argv())
        assert proc.poll() is None  # still watching after the notice
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert err == ""
    assert "STATE: SPOT_NOTICE action=terminate" in out
    assert "STATE: WATCH_STOP" in out
    assert wrapper.signals() == [signal.SIGTERM]
    wait_for(lambda: node.sink.drain()[-1].startswith("STOPPING=1"))


def test_console_script_once_outside_ec2(node, imds):
    imds.stop()
    config = node.write_config()
    proc = subprocess.run(
        [str(VENV_BIN / "decon-spot-watch"), "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"IMDS at {imds.url} unreachable: not on EC2? still watching" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_console_script_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("spot:\n  poll_interval_seconds: often\n")
    proc = subprocess.run(
        [str(VENV_BIN / "decon-spot-watch"), "--config", str(bad), "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "spot.poll_interval_seconds" in proc.stderr
