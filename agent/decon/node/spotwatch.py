"""`decon-spot-watch`: watch IMDS for spot interruption notices and rebalance recommendations.

Separation as in aws-node-termination-handler: the IMDS client (`decon.node.imds`), one monitor
per notice kind (`SpotInterruptionMonitor`, `RebalanceMonitor`) that turns IMDS documents into
new events, and the actions taken for each event (`InterruptionAction`, `RebalanceAction`).
`SpotWatcher` is the loop that ties them together, handles IMDS errors (logged rate-limited,
shown in STATUS, retried at the poll interval, never fatal) and talks to systemd.

Reaction bound: errors never lengthen the wait between polls beyond the poll interval, and one
request is bounded by the request timeout, so once IMDS serves a notice the watcher acts on it
within poll interval + request timeout, whatever errors came before. IMDS is a local endpoint
and the notice's two minutes are the whole margin: backing off buys nothing and costs that.

On a spot instance-action (terminate, stop or hibernate), once per notice:
SPOT_NOTICE -> spot-notice.json -> on-interrupt hooks -> SIGTERM to the wrapper (which forwards
it to the job once) -> wait for the wrapper to exit, at most `spot.checkpoint_deadline_seconds`
and never past the notice time minus `spot.deadline_margin_seconds` -> the finalizer with
`--status interrupted --deadline <notice time - margin>`. When the job has already exited and
the wrapper is finalizing, the wrapper is neither signalled nor waited for: the watcher's
finalizer starts at once and waits on the finalize lock (and the status says so). A rebalance
recommendation only logs REBALANCE_NOTICE and runs the on-rebalance hooks: the job keeps
running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from decon.config import Config, add_config_option, load_config
from decon.errors import guarded_main
from decon.eventlog import EventLog, iso_utc, utc_now
from decon.node.hooks import run_hooks
from decon.node.imds import ImdsClient, ImdsError, ImdsHttpError, ImdsUnreachable, RebalanceNotice
from decon.node.lock import lock_is_held
from decon.node.notify import Notifier, watchdog_interval
from decon.node.state import NodeState, Outcome, SpotNotice

# --- events and monitors -----------------------------------------------------------------------


@dataclass(frozen=True)
class InterruptionEvent:
    notice: SpotNotice


@dataclass(frozen=True)
class RebalanceEvent:
    notice: RebalanceNotice


Event = InterruptionEvent | RebalanceEvent


@dataclass
class SpotInterruptionMonitor:
    """`spot/instance-action` -> a new InterruptionEvent per action.

    AWS may move the notice's time between polls; the same action is the same notice.
    """

    seen_actions: set[str] = field(default_factory=set)
    kind = "spot-interruption"

    def check(self, client: ImdsClient) -> InterruptionEvent | None:
        notice = client.instance_action()
        if notice is None or notice.action in self.seen_actions:
            return None
        self.seen_actions.add(notice.action)
        return InterruptionEvent(notice)


@dataclass
class RebalanceMonitor:
    """`events/recommendations/rebalance` -> a new RebalanceEvent per noticeTime."""

    seen_times: set[str] = field(default_factory=set)
    kind = "rebalance"

    def check(self, client: ImdsClient) -> RebalanceEvent | None:
        notice = client.rebalance_recommendation()
        if notice is None or notice.notice_time in self.seen_times:
            return None
        self.seen_times.add(notice.notice_time)
        return RebalanceEvent(notice)


# --- processes ---------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def process_start_time(pid: int) -> float | None:
    """The epoch time `pid` started, from /proc (None when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3 (state)
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def running_wrapper_pid(state: NodeState) -> int | None:
    """The PID in wrapper.pid if that process still runs and is the one that wrote the file.

    wrapper.pid survives a reboot; a process that started after the file was written only
    reuses the number, and must not be signalled.
    """
    path = state.wrapper_pid_file
    try:
        pid = int(path.read_text().strip())
        written = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if pid <= 1 or pid == os.getpid() or not process_alive(pid):
        return None
    started = process_start_time(pid)
    if started is not None and started > written + 2.0:
        return None
    return pid


def exited_job_outcome(state: NodeState) -> Outcome | None:
    """The outcome of the running wrapper's job once that job has exited, else None.

    The wrapper writes outcome.json when its job exits and wrapper.pid when it starts, so only
    an outcome newer than wrapper.pid is this wrapper's; an older one is left from an earlier
    attempt of the same run.
    """
    try:
        if state.outcome_file.stat().st_mtime < state.wrapper_pid_file.stat().st_mtime:
            return None
    except OSError:
        return None
    return state.outcome()


FINALIZER_OUTCOMES = ("FINALIZE_SUCCESS", "FINALIZE_FAILED", "FINALIZE_SKIPPED")


def finalizer_outcome(log_file: Path, pid: int) -> str | None:
    """The last outcome line (FINALIZE_SUCCESS|FAILED|SKIPPED ...) finalizer `pid` logged."""
    pattern = re.compile(rf"STATE: ((?:{'|'.join(FINALIZER_OUTCOMES)}) .*\bpid={pid}\b.*)$")
    try:
        with log_file.open("rb") as fh:
            fh.seek(max(0, log_file.stat().st_size - (1 << 20)))  # the run log's tail
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if found := pattern.search(line):
            return found.group(1)
    return None


# --- the loop's edges --------------------------------------------------------------------------


@dataclass
class WatchEdges:
    """Everything the watcher touches besides IMDS and files, injectable for tests."""

    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = utc_now
    kill: Callable[[int, int], None] = os.kill
    alive: Callable[[int], bool] = process_alive
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when a stop was requested (SIGTERM to the watcher)."""
        return self.stop.wait(max(0.0, seconds))


class SystemdReporter:
    """The watcher's line to systemd: status lines, watchdog pings, waits that keep the
    watchdog fed."""

    def __init__(self, notifier: Notifier, edges: WatchEdges) -> None:
        self.notifier = notifier
        self.edges = edges
        self.interval = watchdog_interval(edges.env, os.getpid())
        self.last_status: str | None = None

    def status(self, text: str) -> None:
        if text != self.last_status:
            self.last_status = text
            self.notifier.status(text)

    def ping(self) -> None:
        if self.interval is not None:
            self.notifier.watchdog()

    def wait(self, seconds: float) -> bool:
        """Wait `seconds` in watchdog-sized steps; True when a stop was requested."""
        end = self.edges.clock() + seconds
        while True:
            left = end - self.edges.clock()
            if left <= 0:
                return self.edges.stop.is_set()
            step = left if self.interval is None else min(left, self.interval)
            if self.edges.wait(step):
                return True
            self.ping()


# --- actions -----------------------------------------------------------------------------------


class InterruptionAction:
    """What a spot interruption notice sets in motion (once per watcher process)."""

    WAIT_STEP_SECONDS = 0.1

    def __init__(
        self,
        cfg: Config,
        state: NodeState,
        log: EventLog,
        systemd: SystemdReporter,
        edges: WatchEdges,
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.log = log
        self.systemd = systemd
        self.edges = edges
        self.started = False
        self.wrapper_finalizing = False
        self.finalizer_exit: int | None = None

    def deadline(self, notice: SpotNotice) -> dt.datetime:
        """The notice time minus the margin: uploads must be done by then."""
        return notice.when() - dt.timedelta(seconds=self.cfg.spot.deadline_margin_seconds)

    def facts(self, notice: SpotNotice) -> dict[str, str | None]:
        return {
            "DECON_RUN_ID": self.state.run_id(),
            "DECON_JOB_ID": self.cfg.job.id,
            "SPOT_ACTION": notice.action,
            "SPOT_TIME": notice.time,
            "DECON_EVENT": "on-interrupt",
        }

    def handle(self, notice: SpotNotice) -> None:
        self.state.write_notice(notice)
        if self.started:
            self.log.event("SPOT_NOTICE_UPDATE", action=notice.action, note="already handling")
            return
        self.started = True
        deadline = self.deadline(notice)
        deadline_iso = iso_utc(deadline)
        self.systemd.status(f"spot {notice.action} at {notice.time}: running on-interrupt hooks")
        hook_timeout = min(
            float(self.cfg.node.hook_timeout_seconds), max(1.0, self._seconds_until(deadline))
        )
        run_hooks(
            self.cfg.node.hooks_dir, "on-interrupt", self.facts(notice), self.log, hook_timeout
        )
        self.stop_job(notice, deadline)
        if self.edges.stop.is_set():
            self.log.event("FINALIZE_NOT_STARTED", reason="watcher is stopping")
            return
        self.finalize(notice, deadline_iso)

    def stop_job(self, notice: SpotNotice, deadline: dt.datetime) -> None:
        """SIGTERM to the wrapper, then wait for it to exit (bounded)."""
        pid = running_wrapper_pid(self.state)
        if pid is None:
            self.log.event("JOB_STOP_SKIPPED", reason="no wrapper running")
            return
        exited = exited_job_outcome(self.state)
        if exited is not None:
            # The wrapper ignores signals while it finalizes; waiting for it to exit would only
            # wait for its finalizer, which the finalize lock already serialises with ours.
            self.wrapper_finalizing = True
            self.log.event(
                "JOB_STOP_SKIPPED",
                reason="job already exited; the wrapper is finalizing",
                pid=pid,
                completion_status=exited.completion_status,
                exit_code=exited.exit_code,
            )
            return
        try:
            self.edges.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.log.event("JOB_STOP_SKIPPED", reason="wrapper already exited", pid=pid)
            return
        except OSError as exc:
            self.log.event("JOB_STOP_FAILED", pid=pid, error=exc)
            return
        wait = max(
            0.0, min(self.cfg.spot.checkpoint_deadline_seconds, self._seconds_until(deadline))
        )
        self.log.event("JOB_STOP_REQUESTED", pid=pid, signal="SIGTERM", wait_seconds=f"{wait:g}")
        self.systemd.status(f"spot {notice.action} at {notice.time}: waiting for the job to stop")
        started = self.edges.clock()
        while self.edges.alive(pid):
            left = wait - (self.edges.clock() - started)
            if left <= 0:
                self.log.event("JOB_STOP_TIMEOUT", pid=pid, waited_seconds=f"{wait:g}")
                return
            if self.systemd.wait(min(self.WAIT_STEP_SECONDS, left)):
                return
        waited = self.edges.clock() - started
        self.log.event("WRAPPER_EXITED", pid=pid, waited_seconds=f"{waited:.1f}")

    def finalize(self, notice: SpotNotice, deadline_iso: str) -> None:
        """Run the finalizer as a child and wait for it, keeping the watchdog fed.

        When the job had exited before the notice, its recorded outcome stands (the finalizer
        reads outcome.json and adds the notice to the reason): whichever finalizer gets the lock
        first, the sentinel says how the job really ended."""
        cfg = self.cfg
        command = [*cfg.node.finalize_command, "--config", cfg.node.config_path]
        if not self.wrapper_finalizing:
            command += ["--status", "interrupted"]
        command += ["--deadline", deadline_iso]
        if not self.wrapper_finalizing:
            command += ["--reason", f"spot {notice.action} notice for {notice.time}"]
        lock = Path(cfg.node.lock_file)
        head = f"spot {notice.action} at {notice.time}"
        if self.wrapper_finalizing:
            status = (
                f"{head}: job already exited; the wrapper is finalizing; "
                f"our finalizer waits on the lock {lock}"
            )
        elif lock_is_held(lock):
            status = f"{head}: another finalizer holds {lock}; our finalizer waits on it"
        else:
            status = f"{head}: finalizing"
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.log.event("FINALIZE_LAUNCH_FAILED", command=command[0], error=exc)
            return
        self.log.event("FINALIZE_LAUNCH", pid=proc.pid, command=" ".join(command))
        self.systemd.status(status)
        step = self.systemd.interval or 1.0
        while True:
            try:
                proc.wait(timeout=step)  # a stop request here must not orphan the finalizer
                break
            except subprocess.TimeoutExpired:
                self.systemd.ping()
        self.finalizer_exit = proc.returncode
        outcome = finalizer_outcome(Path(cfg.node.log_file), proc.pid)
        self.log.event(
            "FINALIZER_EXIT",
            pid=proc.pid,
            returncode=proc.returncode,
            outcome=outcome or "none logged (see its output above)",
        )
        said = outcome.split()[0] if outcome else "no outcome logged"
        self.systemd.status(f"{head}: finalizer exited {proc.returncode} ({said})")

    def _seconds_until(self, when: dt.datetime) -> float:
        return (when - self.edges.wall()).total_seconds()


class RebalanceAction:
    """A rebalance recommendation: hooks only. The job keeps running; nothing powers off."""

    def __init__(
        self, cfg: Config, state: NodeState, log: EventLog, systemd: SystemdReporter
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.log = log
        self.systemd = systemd

    def handle(self, notice: RebalanceNotice) -> None:
        facts = {
            "DECON_RUN_ID": self.state.run_id(),
            "DECON_JOB_ID": self.cfg.job.id,
            "REBALANCE_NOTICE_TIME": notice.notice_time,
            "DECON_EVENT": "on-rebalance",
        }
        run_hooks(
            self.cfg.node.hooks_dir,
            "on-rebalance",
            facts,
            self.log,
            float(self.cfg.node.hook_timeout_seconds),
        )


# --- the watcher -------------------------------------------------------------------------------


class SpotWatcher:
    """The polling loop: monitors -> events -> actions; IMDS errors never end it."""

    def __init__(
        self,
        cfg: Config,
        client: ImdsClient,
        log: EventLog,
        notifier: Notifier | None = None,
        edges: WatchEdges | None = None,
        error_log_every: int = 30,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.log = log
        self.edges = edges or WatchEdges()
        self.notifier = notifier or Notifier()
        self.systemd = SystemdReporter(self.notifier, self.edges)
        self.state = NodeState(cfg.node.state_dir)
        self.monitors = [SpotInterruptionMonitor(), RebalanceMonitor()]
        self.interruption = InterruptionAction(cfg, self.state, log, self.systemd, self.edges)
        self.rebalance = RebalanceAction(cfg, self.state, log, self.systemd)
        self.error_log_every = max(1, error_log_every)
        self.errors_in_row = 0
        self.first_error_at: float | None = None
        self.ever_reached = False
        self._last_error_key: tuple[str, int | None, str] | None = None

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    def idle_status(self) -> str:
        if self.interruption.started:
            return "spot interruption handled; watching"
        return f"watching {self.endpoint} every {self.cfg.spot.poll_interval_seconds:g}s"

    def start(self) -> None:
        self.log.event(
            "WATCH_START",
            endpoint=self.endpoint,
            poll_interval=f"{self.cfg.spot.poll_interval_seconds:g}s",
            run_id=self.state.run_id(),
        )
        self.notifier.ready(f"starting: {self.idle_status()}")
        self.systemd.last_status = None

    def poll_once(self) -> bool:
        """Ask every monitor once and act on new events; False when IMDS failed.

        The interruption monitor goes first. When IMDS does not answer at all (a hang or a
        refusal) the other monitors are skipped: another timeout would only delay the next
        look at `spot/instance-action`."""
        error: ImdsError | None = None
        for monitor in self.monitors:
            try:
                event = monitor.check(self.client)
            except ImdsUnreachable as exc:
                error = error or exc
                break
            except ImdsError as exc:
                error = error or exc
                continue
            if event is not None:
                if self.errors_in_row:  # say so now: acting on the notice can take minutes
                    self._imds_recovered()
                self.dispatch(event)
        self.systemd.ping()
        if error is not None:
            self._imds_failed(error)
            return False
        self._imds_ok()
        return True

    def dispatch(self, event: Event) -> None:
        if isinstance(event, InterruptionEvent):
            notice = event.notice
            self.log.event(
                "SPOT_NOTICE", action=notice.action, time=notice.time, run_id=self.state.run_id()
            )
            self.interruption.handle(notice)
        else:
            self.log.event(
                "REBALANCE_NOTICE", notice_time=event.notice.notice_time, action="hooks only"
            )
            self.systemd.status(
                f"rebalance recommended at {event.notice.notice_time}; job continues"
            )
            self.rebalance.handle(event.notice)

    def next_delay(self) -> float:
        """The poll interval, after errors too (see the module docstring)."""
        return self.cfg.spot.poll_interval_seconds

    def run(self) -> int:
        """Poll until a stop is requested; never exits because of IMDS."""
        self.start()
        try:
            while not self.edges.stop.is_set():
                self.poll_once()
                if self.systemd.wait(self.next_delay()):
                    break
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        self.log.event("WATCH_STOP", errors_in_row=self.errors_in_row or None)
        self.notifier.stopping("stopping")

    def _imds_failed(self, exc: ImdsError) -> None:
        self.errors_in_row += 1
        if self.first_error_at is None:
            self.first_error_at = self.edges.clock()
        status = exc.status if isinstance(exc, ImdsHttpError) else None
        key = (exc.kind, status, exc.path)
        delay = self.next_delay()
        if isinstance(exc, ImdsUnreachable) and not self.ever_reached:
            message = f"IMDS at {self.endpoint} unreachable: not on EC2? still watching"
        else:
            message = str(exc)
        if (
            key != self._last_error_key
            or self.errors_in_row == 1
            or self.errors_in_row % self.error_log_every == 0
        ):
            self.log.event(
                "IMDS_ERROR",
                kind=exc.kind,
                status=status,
                path=exc.path or None,
                errors_in_row=self.errors_in_row,
                retry_in=f"{delay:g}s",
                message=message,
            )
        self._last_error_key = key
        self.systemd.status(
            f"IMDS error ({exc.kind}): {message}; {self.errors_in_row} in a row, "
            f"retry in {delay:g}s"
        )

    def _imds_ok(self) -> None:
        if self.errors_in_row:
            self._imds_recovered()
        self.ever_reached = True
        self.systemd.status(self.idle_status())

    def _imds_recovered(self) -> None:
        since = self.edges.clock() - (self.first_error_at or self.edges.clock())
        self.log.event(
            "IMDS_OK",
            after_errors=self.errors_in_row,
            failing_seconds=f"{since:.1f}",
            message=f"IMDS answering again after {self.errors_in_row} errors",
        )
        self.errors_in_row = 0
        self.first_error_at = None
        self._last_error_key = None
        self.ever_reached = True


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decon-spot-watch",
        description="Watch IMDS (v2) for spot interruption notices and rebalance "
        "recommendations; on a notice stop the job and finalize the run.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--once", action="store_true", help="poll once, act on a notice, exit (1 on IMDS error)"
    )
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config)
    log = EventLog(cfg.node.log_file, sys.stdout)
    edges = WatchEdges()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: edges.stop.set())
    spot = cfg.spot
    with ImdsClient(
        spot.imds_endpoint, spot.token_ttl_seconds, spot.request_timeout_seconds
    ) as client:
        watcher = SpotWatcher(cfg, client, log, Notifier(), edges)
        if not args.once:
            return watcher.run()
        watcher.start()
        try:
            return 0 if watcher.poll_once() else 1
        finally:
            watcher.shutdown()


def main(argv: list[str] | None = None) -> int:
    return guarded_main(_main, argv)
