"""`decon-wrapper`: the ExecStart of decon.service (SPEC sections 3, 6, 9).

Runs the job command as a child, forwards the first SIGTERM/SIGINT/SIGHUP to it (exactly once),
waits for it, records the outcome in the node state and runs the finalizer in its own process.

Run id on start (SPEC section 6):

- no run id on this node                 -> a new run
- run id without a sentinel              -> the same run again (a reboot or crash mid-run; the
  (or `_FAILED_UPLOAD`, or the S3 check     job skips finished files and the finalizer retries)
  failed)
- `_SUCCESS` with `interrupted`          -> a new run that redoes only the unfinished files
- `_SUCCESS` with `normal`               -> nothing runs; the node powers off (it is finished,
                                            so a careful user expects it to go away)

Exit codes (decon.service restarts on failure, so these decide whether a job is ever rerun):

- 0  the job ran and the finalizer ran (whatever either returned), or the job was already done
- 2  bad config or arguments (a user error; the unit does not restart on it)
- 3  the finalizer could not be started (the unit does not restart on it: the job is over)
- 1  the wrapper itself crashed (the unit restarts it; the same run resumes)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from decon.config import Config, add_config_option, load_config
from decon.errors import guarded_main
from decon.eventlog import EventLog, one_line
from decon.node.imds import ImdsClient
from decon.node.notify import Notifier, watchdog_interval
from decon.node.state import NodeState, Outcome

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EXIT_OK = 0
EXIT_FINALIZER_NOT_STARTED = 3
PROGRESS_CHECK_SECONDS = 5.0


class SentinelInfo(Protocol):
    """What the wrapper needs of a run's sentinel (decon.node.sentinel)."""

    status: str  # success | failed_upload
    completion_status: str | None  # normal | interrupted


# (config, run id) -> the run's sentinel or None; raises when the store cannot be asked.
SentinelLookup = Callable[[Config, str], "SentinelInfo | None"]


def s3_sentinel_lookup(cfg: Config, run_id: str) -> SentinelInfo | None:
    """The sentinel of `run_id` under the job's runs/ prefix, or None when there is none."""
    from decon.node.sentinel import read_sentinel
    from decon.storage import open_storage

    return read_sentinel(open_storage(cfg.output_prefix("runs"), cfg.aws), run_id)


@dataclass(frozen=True)
class RunDecision:
    action: str  # new | resume | done
    reason: str


def decide_run(run_id: str | None, sentinel: SentinelInfo | None) -> RunDecision:
    """Pure rule of SPEC section 6: what to do with the node's current run on start."""
    if run_id is None:
        return RunDecision("new", "no run on this node yet")
    if sentinel is None:
        return RunDecision("resume", "run has no sentinel (restarted mid-run)")
    if sentinel.status != "success":
        return RunDecision("resume", f"run has sentinel status={sentinel.status}; retrying it")
    if sentinel.completion_status == "normal":
        return RunDecision("done", "run already has _SUCCESS completion_status=normal")
    return RunDecision("new", f"previous run ended completion_status={sentinel.completion_status}")


def resolve_instance_id(cfg: Config, imds_lookup: Callable[[], str | None] | None = None) -> str:
    """`node.instance_id`, else the IMDS instance id (when a lookup is given), else the host name.

    The IMDS lookup is a seam: the spot watcher's IMDSv2 client plugs in here.
    """
    if cfg.node.instance_id:
        return cfg.node.instance_id
    if imds_lookup is not None:
        with contextlib.suppress(Exception):
            found = imds_lookup()
            if found:
                return found
    return socket.gethostname().split(".")[0] or "localhost"


IMDS_LOOKUP_TIMEOUT_SECONDS = 1.0  # one attempt; the start must not wait long for IMDS


def imds_instance_id_lookup(
    cfg: Config, timeout: float = IMDS_LOOKUP_TIMEOUT_SECONDS
) -> Callable[[], str | None]:
    """A lookup of the instance id from `spot.imds_endpoint` (IMDSv2), one short attempt.

    Raises when IMDS is unreachable; `resolve_instance_id` then falls back to the host name.
    """

    def lookup() -> str | None:
        with ImdsClient(cfg.spot.imds_endpoint, timeout=timeout) as client:
            return client.instance_id()

    return lookup


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def progress_text(progress: Mapping[str, Any]) -> str:
    """`files 3/10 done, 1 contaminated, 0 failed` from the job's progress.json, or ''."""
    if "assigned" not in progress:
        return ""
    text = f"files {progress.get('done', 0)}/{progress['assigned']} done"
    for key in ("contaminated", "failed"):
        if key in progress:
            text += f", {progress[key]} {key}"
    return text


def finished_status(run_id: str, outcome: Outcome, finalizer_code: int) -> str:
    """The unit's last STATUS=: how the job ended and whether the finalizer succeeded."""
    job = f"job {outcome.completion_status} (exit {outcome.exit_code})"
    if finalizer_code == 0:
        return f"finished run_id={run_id}: {job}, finalized"
    return (
        f"finished run_id={run_id}: {job}, finalizer exited {finalizer_code} "
        "(upload failed? see /var/log/decon-run.log; rerun decon-finalize)"
    )


@contextlib.contextmanager
def signal_pipe() -> Iterator[int]:
    """Route SIGTERM/SIGINT/SIGHUP to a pipe (one byte per signal); yields its read end.

    The main loop reads signal numbers from the pipe, so the forwarding decision lives in one
    place with no state in signal handlers.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    old_handlers = {sig: signal.signal(sig, lambda *_: None) for sig in FORWARDED_SIGNALS}
    try:
        yield read_fd
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        os.close(read_fd)
        os.close(write_fd)


def read_signals(fd: int) -> list[int]:
    try:
        return list(os.read(fd, 256))
    except BlockingIOError:
        return []


class Wrapper:
    """One wrapper run: job child, signal forwarding, notify, outcome, finalizer."""

    def __init__(
        self,
        cfg: Config,
        log: EventLog,
        notifier: Notifier,
        sentinel_lookup: SentinelLookup = s3_sentinel_lookup,
        imds_lookup: Callable[[], str | None] | None = None,
        env: Mapping[str, str] | None = None,
        progress_every: float = PROGRESS_CHECK_SECONDS,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.notifier = notifier
        self.state = NodeState(cfg.node.state_dir)
        self.sentinel_lookup = sentinel_lookup
        self.imds_lookup = imds_lookup
        self.env = dict(os.environ if env is None else env)
        self.watchdog = watchdog_interval(self.env, os.getpid())
        self.progress_every = progress_every
        self.forwarded: int | None = None  # the one signal passed to the job
        self.stopping_sent = False

    # -- run id -------------------------------------------------------------------------------

    def choose_run(self) -> tuple[RunDecision, str]:
        """Decide new/resume/done for this start and return the decision with the run id."""
        current = self.state.run_id()
        sentinel = None
        if current is not None:
            try:
                sentinel = self.sentinel_lookup(self.cfg, current)
            except Exception as exc:  # any store failure means "resume"
                self.log.event("SENTINEL_CHECK_FAILED", run_id=current, error=one_line(exc))
        decision = decide_run(current, sentinel)
        if decision.action == "new":
            run_id = self.state.start_run(resolve_instance_id(self.cfg, self.imds_lookup))
        else:
            run_id = current or ""
            if decision.action == "resume":
                self._clear_stale_notice()
        self.log.event("RUN_SELECTED", run_id=run_id, action=decision.action, why=decision.reason)
        return decision, run_id

    def _clear_stale_notice(self) -> None:
        """A spot notice whose time has passed belongs to an earlier boot: drop it, so the
        finalizer does not take a deadline in the past."""
        notice = self.state.notice()
        if notice is None:
            return
        try:
            stale = notice.when().timestamp() < time.time()
        except ValueError:
            stale = True
        if stale:
            self.state.clear_notice()
            self.log.event("STALE_NOTICE_CLEARED", action=notice.action, time=notice.time)

    # -- main flow ----------------------------------------------------------------------------

    def run(self) -> int:
        with signal_pipe() as sig_fd:
            decision, run_id = self.choose_run()
            if decision.action == "done":
                return self.go_away(run_id)
            outcome = self.run_job(run_id, sig_fd)
            self.state.write_outcome(outcome)
            self.log.event(
                "JOB_EXIT",
                run_id=run_id,
                completion_status=outcome.completion_status,
                exit_code=outcome.exit_code,
                reason=outcome.reason,
            )
            return self.finalize(run_id, outcome, sig_fd)

    def go_away(self, run_id: str) -> int:
        """The run is finished: run nothing, power off (the instance terminates)."""
        self.log.event("JOB_ALREADY_DONE", run_id=run_id)
        self.notifier.ready(f"run {run_id} already finished; powering off")
        self.notifier.stopping()
        poweroff = self.cfg.node.poweroff_command
        self.log.event("TERMINATING", run_id=run_id, command=" ".join(poweroff))
        try:
            subprocess.run(poweroff, check=False, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.log.event("POWEROFF_FAILED", run_id=run_id, error=one_line(exc))
        return EXIT_OK

    def child_env(self, run_id: str) -> dict[str, str]:
        env = dict(self.env)
        env["DECON_RUN_ID"] = run_id
        env["DECON_CONFIG"] = self.cfg.node.config_path
        return env

    def run_job(self, run_id: str, sig_fd: int) -> Outcome:
        """Start the job, relay signals/notify while it runs, return how it ended."""
        command = self.cfg.node.job_command
        early = read_signals(sig_fd)
        if early:  # asked to stop before the job started (e.g. during the sentinel check)
            name = signal_name(early[0])
            self.log.event("JOB_NOT_STARTED", run_id=run_id, signal=name)
            self.forwarded = early[0]  # later signals are "already handled"
            self._stopping(f"stopping: {name} before the job started")
            return Outcome.from_exit(-early[0], f"stopped by {name} before the job started")
        self.log.event("JOB_START", run_id=run_id, command=" ".join(command))
        try:
            # Own process group: a terminal's Ctrl-C reaches only the wrapper, which forwards
            # it once; systemd's KillMode=mixed likewise signals only the wrapper.
            child = subprocess.Popen(
                command, env=self.child_env(run_id), stdin=subprocess.DEVNULL, process_group=0
            )
        except OSError as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            reason = f"job command cannot start: {one_line(exc)}"
            self.log.event("JOB_START_FAILED", run_id=run_id, exit_code=code, error=one_line(exc))
            self.notifier.ready(reason)
            return Outcome.from_exit(code, reason)
        base_status = f"running job (pid {child.pid}) run_id={run_id}"
        self.notifier.ready(base_status)
        code = self._supervise(child, sig_fd, base_status)
        reason = None
        if self.forwarded is not None:
            base = Outcome.from_exit(code).reason
            reason = f"{base} after {signal_name(self.forwarded)} was forwarded to it"
        return Outcome.from_exit(code, reason)

    def _supervise(self, child: subprocess.Popen[bytes], sig_fd: int, base_status: str) -> int:
        pidfd = _pidfd(child.pid)
        next_ping = time.monotonic()
        next_progress = time.monotonic()
        last_progress = ""
        try:
            while True:
                for signum in read_signals(sig_fd):
                    self._on_signal(signum, child)
                code = child.poll()
                if code is not None:
                    return code
                now = time.monotonic()
                if self.watchdog is not None and now >= next_ping:
                    self.notifier.watchdog()
                    next_ping = now + self.watchdog
                if now >= next_progress and self.forwarded is None:
                    text = progress_text(self.state.progress())
                    if text and text != last_progress:
                        self.notifier.status(f"{base_status}: {text}")
                        last_progress = text
                    next_progress = now + self.progress_every
                wake = [next_progress]
                if self.watchdog is not None:
                    wake.append(next_ping)
                timeout = max(0.0, min(wake) - time.monotonic())
                fds = [sig_fd] + ([pidfd] if pidfd is not None else [])
                # Without a pidfd (old kernels) poll the child a few times a second.
                select.select(fds, [], [], timeout if pidfd is not None else min(timeout, 0.2))
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _on_signal(self, signum: int, child: subprocess.Popen[bytes]) -> None:
        name = signal_name(signum)
        if self.forwarded is not None:
            self.log.event("SIGNAL_NOT_FORWARDED", signal=name, pid=child.pid, why="already sent")
            return
        if child.poll() is not None:
            return  # the job is already gone; nothing to forward
        self.forwarded = signum
        child.send_signal(signum)
        self.log.event("SIGNAL_FORWARDED", signal=name, pid=child.pid)
        self._stopping(f"stopping: {name} forwarded to job (pid {child.pid})")

    def _stopping(self, status: str) -> None:
        """STOPPING=1 once, and only when asked to stop: systemd starts TimeoutStopSec when it
        gets STOPPING=1, which must not cut short the finalizer after a job that simply ended
        (its keep-for-inspection period can be long)."""
        if self.forwarded is not None and not self.stopping_sent:
            self.stopping_sent = True
            self.notifier.stopping(status)
        else:
            self.notifier.status(status)

    def finalize(self, run_id: str, outcome: Outcome, sig_fd: int) -> int:
        """Run the finalizer in its own process and wait for it; signals are logged, not obeyed."""
        command = [
            *self.cfg.node.finalize_command,
            "--config",
            self.cfg.node.config_path,
            "--status",
            outcome.completion_status,
            "--exit-code",
            str(outcome.exit_code),
            "--reason",
            outcome.reason,
        ]
        self._stopping(
            f"finalizing run_id={run_id} ({outcome.completion_status}, exit {outcome.exit_code})"
        )
        env = self.child_env(run_id)
        env["COMPLETION_STATUS"] = outcome.completion_status
        env["EXIT_CODE"] = str(outcome.exit_code)
        try:
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            self.log.event("FINALIZER_NOT_STARTED", run_id=run_id, error=one_line(exc))
            return EXIT_FINALIZER_NOT_STARTED
        while True:
            try:
                code = proc.wait(timeout=self.watchdog or 1.0)
                break
            except subprocess.TimeoutExpired:
                if self.watchdog is not None:
                    self.notifier.watchdog()
            for signum in read_signals(sig_fd):
                self.log.event("SIGNAL_NOT_FORWARDED", signal=signal_name(signum), why="finalizing")
        for signum in read_signals(sig_fd):
            self.log.event("SIGNAL_NOT_FORWARDED", signal=signal_name(signum), why="finalizing")
        self.log.event("FINALIZER_EXIT", run_id=run_id, exit_code=code)
        # The last STATUS= stays in `systemctl status` after the unit ends: not "finalizing".
        self.notifier.status(finished_status(run_id, outcome, code))
        return EXIT_OK


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decon-wrapper",
        description="Run the node's job under systemd: forward signals, record the outcome, "
        "finalize. The ExecStart of decon.service.",
    )
    add_config_option(parser)
    return parser


def _main(argv: list[str] | None, **wrapper_options: Any) -> int:
    """Parse, load the config, run one `Wrapper`; `wrapper_options` go to it (tests inject
    the sentinel lookup here)."""
    args = _parser().parse_args(argv)
    cfg = load_config(args.config)
    state = NodeState(cfg.node.state_dir)
    state.dir.mkdir(parents=True, exist_ok=True)
    pid_file = state.wrapper_pid_file
    pid_file.write_text(f"{os.getpid()}\n")
    wrapper_options.setdefault("imds_lookup", imds_instance_id_lookup(cfg))
    try:
        wrapper = Wrapper(cfg, EventLog(cfg.node.log_file), Notifier(), **wrapper_options)
        return wrapper.run()
    finally:
        _remove_own_pid_file(pid_file)


def _remove_own_pid_file(path: Path) -> None:
    """Remove the pid file if it is still ours, so no one signals a reused pid later."""
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    """Console entry point of `decon-wrapper`."""
    return guarded_main(_main, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
