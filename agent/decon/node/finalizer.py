"""`decon-finalize`: the idempotent finalizer of SPEC section 8, also the operator's manual rerun.

    1. flock the lock file (a second finalizer waits, then sees the sentinel and returns)
    2. `_SUCCESS` already there: FINALIZE_SKIPPED, upload nothing, no poweroff
    3. pre-finalize hooks; upload the outbox, journal export, run log and manifest.json to
       runs/{RUN_ID}/ with backoff (7 attempts, waits 1..32 s, never past the deadline)
    4. `_SUCCESS` last (conditional write); on final failure `_FAILED_UPLOAD` and the policy
       (`keep`: stay up `keep_seconds` with the lock released, then power off; `poweroff`: now)
    5. post-finalize hooks, TERMINATING, the run log once more (best effort, same key: now with
       the sentinel's line and TERMINATING), the poweroff command

The uploads go through `decon.storage` with botocore's own retries pinned to one attempt, under
the finalizer's `RetryPolicy` (the only retry layer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decon.config import Config, add_config_option, load_config
from decon.errors import UserError, guarded_main
from decon.eventlog import EventLog, iso_utc, parse_iso_utc, utc_now
from decon.node.capacity import scale_to_zero_if_drained
from decon.node.hooks import run_hooks
from decon.node.lock import finalize_lock
from decon.node.sentinel import (
    FAILED_UPLOAD,
    SUCCESS,
    Sentinel,
    clear_failed_upload,
    file_counts,
    success_exists,
    write_failed_upload,
    write_success,
)
from decon.node.state import NodeState, Outcome, SpotNotice
from decon.storage import (
    RetryPolicy,
    Storage,
    StorageError,
    file_digest,
    is_transient,
    open_storage,
)

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], None]
# (journal unit, destination file) -> None when exported, else why it was skipped
JournalExport = Callable[[str, Path], str | None]

LOG_NAME = "decon-run.log"
# The manifest lists the run log as uploaded before the sentinel. After the sentinel the object
# is replaced, best effort, by the complete log; the log only grows, so the listed size and
# sha256 are then those of the object's first `size` bytes.
LOG_VERSION = "before-sentinel"
JOURNAL_NAME = "journal.jsonl"
MANIFEST_NAME = "manifest.json"
KEEP_CHECK_SECONDS = 10.0  # during the keep period, how often to look for a rerun's `_SUCCESS`
RESERVED_NAMES = frozenset({LOG_NAME, JOURNAL_NAME, MANIFEST_NAME, SUCCESS, FAILED_UPLOAD})


@dataclass
class FinalizeRequest:
    """What the caller (wrapper, spot watcher or operator) asks for; None = not given."""

    status: str | None = None  # normal | interrupted
    exit_code: int | None = None
    reason: str | None = None
    deadline: dt.datetime | None = None
    poweroff: bool = True
    dry_run: bool = False


@dataclass
class RunOutcome:
    """How the run ended, as it goes into the sentinel and the hooks' environment."""

    completion_status: str
    exit_code: int | None  # None: nobody recorded one
    reason: str


@dataclass
class FinalizeResult:
    status: str  # success | skipped | failed_upload | dry_run
    run_id: str
    sentinel: Sentinel | None = None
    artifacts: list[str] = field(default_factory=list)
    powered_off: bool = False
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "failed_upload" else 0


@dataclass
class Artifact:
    """One object to upload to runs/{RUN_ID}/{name}: a file, or bytes already in memory."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def digest(self) -> tuple[int, str]:
        """(size, sha256 hex) of the content."""
        if self.data is not None:
            return len(self.data), hashlib.sha256(self.data).hexdigest()
        assert self.path is not None
        return file_digest(self.path)


class UploadFailed(Exception):
    """An artifact could not be uploaded within the attempts or before the deadline."""


@dataclass
class Context:
    """Everything the steps share for one finalization."""

    cfg: Config
    request: FinalizeRequest
    state: NodeState
    run_id: str
    storage: Storage
    log: EventLog
    sleep: Sleep
    clock: Clock
    outcome: RunOutcome
    notice: SpotNotice | None
    deadline: dt.datetime | None

    def facts(self, **extra: Any) -> dict[str, Any]:
        """The run's facts for hooks (None values are left out of the environment)."""
        return {
            "DECON_RUN_ID": self.run_id,
            "DECON_JOB_ID": self.cfg.job.id,
            "COMPLETION_STATUS": self.outcome.completion_status,
            "EXIT_CODE": self.outcome.exit_code,
            "SPOT_ACTION": self.notice.action if self.notice else None,
            "SPOT_TIME": self.notice.time if self.notice else None,
            **extra,
        }

    def key(self, name: str) -> str:
        return f"{self.run_id}/{name}"


def finalize_run(
    cfg: Config,
    request: FinalizeRequest,
    *,
    log: EventLog,
    sleep: Sleep = time.sleep,
    clock: Clock = utc_now,
    journal: JournalExport | None = None,
    storage: Storage | None = None,
) -> FinalizeResult:
    """Finalize the node's current run (SPEC section 8). Waits and time are injectable."""
    state = NodeState(cfg.node.state_dir)
    run_id = require_run_id(state)
    storage = storage or open_storage(runs_prefix(cfg), cfg.aws, attempts=1)
    ctx = make_context(cfg, request, state, run_id, storage, log, sleep, clock)
    if request.dry_run:
        return describe_dry_run(ctx)

    with finalize_lock(Path(cfg.node.lock_file), log):  # 1. one finalizer at a time
        if sentinel_present(ctx):  # 2. already finalized: a logged no-op
            log.event(
                "FINALIZE_SKIPPED",
                run_id=run_id,
                reason=f"{SUCCESS} already written",
                sentinel=storage.uri(ctx.key(SUCCESS)),
                pid=os.getpid(),
            )
            return FinalizeResult("skipped", run_id)
        log.event(
            "FINALIZE_START",
            run_id=run_id,
            pid=os.getpid(),
            completion_status=ctx.outcome.completion_status,
            exit_code=ctx.outcome.exit_code,
            deadline=iso_utc(ctx.deadline) if ctx.deadline else None,
        )
        run_hooks(cfg.node.hooks_dir, "pre-finalize", ctx.facts(), log, hook_timeout(ctx))  # 3.
        try:
            uploaded = upload_artifacts(ctx, collect_artifacts(ctx, journal or export_journal))
            result = write_success_sentinel(ctx, uploaded)  # 4. the sentinel, last
        except UploadFailed as exc:
            result = record_failure(ctx, str(exc))
        if result.status == "success":
            instance = cfg.node.instance_id or socket.gethostname()
            scale_to_zero_if_drained(cfg, storage, instance, log)
    if result.status == "failed_upload" and request.poweroff:
        apply_failure_policy(ctx)
    return finish(ctx, result)  # 5. post-finalize hooks, TERMINATING, poweroff


# --- setup -------------------------------------------------------------------------------------


def require_run_id(state: NodeState) -> str:
    run_id = state.run_id()
    if run_id is None:
        raise UserError(
            f"{state.run_id_file}: no run id: no job has started on this node, nothing to finalize"
        )
    return run_id


def runs_prefix(cfg: Config) -> str:
    if not (cfg.output.runs or cfg.output.uri):
        raise UserError("output.runs: not set (set output.uri or output.runs in the config)")
    return cfg.output_prefix("runs")


def make_context(
    cfg: Config,
    request: FinalizeRequest,
    state: NodeState,
    run_id: str,
    storage: Storage,
    log: EventLog,
    sleep: Sleep,
    clock: Clock,
) -> Context:
    notice = state.notice()
    return Context(
        cfg=cfg,
        request=request,
        state=state,
        run_id=run_id,
        storage=storage,
        log=log,
        sleep=sleep,
        clock=clock,
        outcome=resolve_outcome(request, state.outcome(), notice),
        notice=notice,
        deadline=resolve_deadline(request, notice, cfg.spot.deadline_margin_seconds, log),
    )


def resolve_outcome(
    request: FinalizeRequest, recorded: Outcome | None, notice: SpotNotice | None
) -> RunOutcome:
    """Flags win, then the wrapper's recorded outcome, else 'interrupted' (manual finalize)."""
    if request.status is not None or request.exit_code is not None:
        exit_code = request.exit_code
        if exit_code is None and recorded is not None:
            exit_code = recorded.exit_code
        derived = Outcome.from_exit(exit_code) if exit_code is not None else None
        status = request.status or (derived.completion_status if derived else "interrupted")
        reason = derived.reason if derived else "no job exit code recorded"
        if request.status is not None:
            reason += f"; status {status} set by operator"
        outcome = RunOutcome(status, exit_code, reason)
    elif recorded is not None:
        outcome = RunOutcome(recorded.completion_status, recorded.exit_code, recorded.reason)
    else:
        outcome = RunOutcome("interrupted", None, "manual finalize: no job outcome recorded")
    if request.reason:
        outcome.reason = request.reason
    if notice is not None:
        outcome.reason += f"; spot {notice.action} notice for {notice.time}"
    return outcome


def resolve_deadline(
    request: FinalizeRequest, notice: SpotNotice | None, margin: float, log: EventLog
) -> dt.datetime | None:
    """--deadline, else the spot notice time minus the margin, else none."""
    if request.deadline is not None:
        return request.deadline
    if notice is None:
        return None
    try:
        return notice.when() - dt.timedelta(seconds=margin)
    except ValueError:
        log.line(f"spot notice time {notice.time!r} is not ISO 8601; finalizing without deadline")
        return None


def sentinel_present(ctx: Context) -> bool:
    """Whether `_SUCCESS` exists. If S3 cannot be asked, go on: `_SUCCESS` is written with a
    conditional PUT, so finalizing again can never produce a second one."""
    try:
        return success_exists(ctx.storage, ctx.run_id)
    except StorageError as exc:
        ctx.log.line(f"cannot check {SUCCESS}: {exc}; finalizing anyway")
        return False


def hook_timeout(ctx: Context) -> float:
    return float(ctx.cfg.node.hook_timeout_seconds)


# --- artifacts ---------------------------------------------------------------------------------


def collect_artifacts(ctx: Context, journal: JournalExport) -> list[Artifact]:
    """The outbox (relative paths kept), then the journal export. The run log and the manifest
    are added by `upload_artifacts`, as late as possible."""
    artifacts = outbox_artifacts(ctx.state.outbox, ctx.log)
    journal_file = ctx.state.dir / "finalize" / JOURNAL_NAME
    journal_file.parent.mkdir(parents=True, exist_ok=True)
    skipped = journal(ctx.cfg.node.journal_unit, journal_file)
    if skipped is None:
        artifacts.append(Artifact(JOURNAL_NAME, path=journal_file))
    else:
        ctx.log.line(f"journal export skipped: {skipped}")
    return artifacts


def outbox_artifacts(outbox: Path, log: EventLog) -> list[Artifact]:
    if not outbox.is_dir():
        return []
    found = []
    for path in sorted(p for p in outbox.rglob("*") if p.is_file()):
        name = path.relative_to(outbox).as_posix()
        if name in RESERVED_NAMES:
            log.line(f"outbox file {path} has the name of a run artifact; not uploaded")
            continue
        found.append(Artifact(name, path=path))
    return found


def export_journal(
    unit: str, dest: Path, *, command: Sequence[str] | None = None, timeout: float = 60.0
) -> str | None:
    """`journalctl -u UNIT -o json` into `dest`; returns why it was skipped, or None."""
    argv = list(command) if command else ["journalctl"]
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} not found"
    argv += ["-u", unit, "-o", "json", "--no-pager"]
    try:
        with dest.open("wb") as out:
            proc = subprocess.run(
                argv, stdout=out, stderr=subprocess.PIPE, timeout=timeout, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]} failed: {exc}"
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{argv[0]} exited {proc.returncode}: {detail[-1] if detail else ''}".strip()
    return None


def upload_artifacts(ctx: Context, artifacts: list[Artifact]) -> list[str]:
    """Upload every artifact, the run log and manifest.json; returns the URIs, manifest last."""
    manifest = list(ctx.state.uploads())
    uris = []
    for artifact in [*artifacts, log_snapshot(ctx)]:
        uris.append(upload_one(ctx, artifact))
        size, sha = artifact.digest()
        manifest.append({"uri": uris[-1], "size": size, "sha256": sha})
        if artifact.name == LOG_NAME:
            manifest[-1]["version"] = LOG_VERSION
    body = {"run_id": ctx.run_id, "created_at": iso_utc(ctx.clock()), "objects": manifest}
    data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    uris.append(upload_one(ctx, Artifact(MANIFEST_NAME, data=data)))
    return uris


def log_snapshot(ctx: Context) -> Artifact:
    """This run's part of the run log as it is now (it keeps growing while we upload it)."""
    try:
        data = Path(ctx.cfg.node.log_file).read_bytes()
    except FileNotFoundError:
        data = b""
    return Artifact(LOG_NAME, data=lines_of_run(data, ctx.run_id))


def lines_of_run(log: bytes, run_id: str) -> bytes:
    """The log from the wrapper's first RUN_SELECTED line of `run_id` on. The log file
    outlives a run (a stopped spot instance started again begins a new run in the same file),
    and runs/{RUN_ID}/ holds one run's log. A log with no such line (a manual finalize on a
    node where the wrapper never ran) is kept whole."""
    found = log.find(f"STATE: RUN_SELECTED run_id={run_id} ".encode())
    if found < 0:
        return log
    return log[log.rfind(b"\n", 0, found) + 1 :]


def upload_final_log(ctx: Context) -> None:
    """The run log once more under the same key, now with the run's last lines. One try and
    never fatal: the sentinel was the last required write, so a failure here changes nothing
    but this line in the local log and the journal."""
    artifact = log_snapshot(ctx)
    key = ctx.key(LOG_NAME)
    uri = ctx.storage.uri(key)
    assert artifact.data is not None
    try:
        ctx.storage.put_bytes(key, artifact.data)
    except Exception as exc:  # best effort: nothing here may change the outcome
        error = " ".join(str(exc).split()) or type(exc).__name__
        ctx.log.event("FINAL_LOG_UPLOAD_FAILED", uri=uri, error=error, effect="none")
        return
    ctx.log.event("FINAL_LOG_UPLOADED", uri=uri, size=len(artifact.data))


def upload_one(ctx: Context, artifact: Artifact) -> str:
    """One artifact under the backoff schedule; returns its URI."""
    key = ctx.key(artifact.name)

    def put() -> bool:
        if artifact.data is not None:
            return ctx.storage.put_bytes(key, artifact.data)
        assert artifact.path is not None
        ctx.storage.put_file(key, artifact.path)
        return True

    uri = ctx.storage.uri(key)
    with_backoff(ctx, uri, put)
    return uri


def with_backoff(ctx: Context, uri: str, action: Callable[[], bool]) -> bool:
    """Run one storage write under the finalizer's upload policy (never past the deadline),
    logging UPLOAD_SUCCESS / UPLOAD_FAIL per attempt; UploadFailed when the attempts or the
    time run out."""
    policy = RetryPolicy.finalizer_uploads(ctx.cfg.node)
    attempt = 0

    def once() -> bool:
        nonlocal attempt
        attempt += 1
        try:
            result = action()
        except StorageError as exc:
            transient = is_transient(exc)
            ctx.log.event(
                "UPLOAD_FAIL", uri=uri, attempt=attempt, transient=transient, error=str(exc)
            )
            raise
        ctx.log.event("UPLOAD_SUCCESS", uri=uri, attempt=attempt)
        return result

    try:
        return policy.call(once, deadline=ctx.deadline, clock=ctx.clock, sleep=ctx.sleep)
    except StorageError as exc:
        spent = "the deadline" if attempt < policy.attempts else f"{attempt} attempts"
        raise UploadFailed(f"gave up after {spent}: {exc}") from exc


# --- sentinel and failure ----------------------------------------------------------------------


def build_sentinel(ctx: Context, status: str, artifacts: list[str], error: str | None) -> Sentinel:
    return Sentinel(
        run_id=ctx.run_id,
        job_id=ctx.cfg.job.id,
        instance_id=ctx.cfg.node.instance_id or socket.gethostname(),
        host_index=ctx.cfg.job.host_index,
        host_count=ctx.cfg.job.host_count,
        finalized_at=iso_utc(ctx.clock()),
        status=status,
        completion_status=ctx.outcome.completion_status,
        exit_code=ctx.outcome.exit_code,
        reason=ctx.outcome.reason,
        files=file_counts(ctx.state.progress()),
        artifacts=artifacts,
        last_error=error,
    )


def write_success_sentinel(ctx: Context, artifacts: list[str]) -> FinalizeResult:
    """`_SUCCESS` with If-None-Match: * (retried like an artifact), then drop `_FAILED_UPLOAD`."""
    sentinel = build_sentinel(ctx, "success", artifacts, None)
    uri = ctx.storage.uri(ctx.key(SUCCESS))
    won = with_backoff(ctx, uri, lambda: write_success(ctx.storage, sentinel))
    if not won:
        ctx.log.line(f"{uri} already written by another finalizer (412); keeping theirs")
    try:
        clear_failed_upload(ctx.storage, ctx.run_id)
    except StorageError as exc:
        ctx.log.line(f"cannot remove {FAILED_UPLOAD}: {exc}")
    ctx.log.event("FINALIZE_SUCCESS", run_id=ctx.run_id, sentinel=uri, written=won, pid=os.getpid())
    return FinalizeResult("success", ctx.run_id, sentinel, artifacts)


def record_failure(ctx: Context, error: str) -> FinalizeResult:
    """`_FAILED_UPLOAD`, best effort (one try: the schedule is already spent), FINALIZE_FAILED."""
    sentinel = build_sentinel(ctx, "failed_upload", [], error)
    try:
        write_failed_upload(ctx.storage, sentinel)
        written = True
    except StorageError as exc:
        ctx.log.line(f"cannot write {FAILED_UPLOAD}: {exc}")
        written = False
    ctx.log.event(
        "FINALIZE_FAILED",
        run_id=ctx.run_id,
        error=error,
        failed_upload_sentinel=written,
        policy=ctx.cfg.node.on_upload_failure,
        pid=os.getpid(),
    )
    return FinalizeResult("failed_upload", ctx.run_id, sentinel, error=error)


def apply_failure_policy(ctx: Context) -> None:
    """`keep`: stay up for `keep_seconds` (never past the deadline) so an operator can ssh in
    and rerun `decon-finalize` (the lock is released meanwhile), then power off; the keep ends
    early once a rerun has written `_SUCCESS`. `poweroff`: go on at once."""
    if ctx.cfg.node.on_upload_failure != "keep":
        return
    seconds = float(ctx.cfg.node.keep_seconds)
    if ctx.deadline is not None:  # a spot notice: go down cleanly before AWS takes the node
        seconds = max(0.0, min(seconds, (ctx.deadline - ctx.clock()).total_seconds()))
    until = ctx.clock() + dt.timedelta(seconds=seconds)
    ctx.log.event(
        "FINALIZE_KEEP",
        run_id=ctx.run_id,
        keep_seconds=f"{seconds:g}",
        poweroff_at=iso_utc(until),
        hint="fix the cause and run decon-finalize; stop this process to cancel the poweroff",
    )
    waited = 0.0
    while waited < seconds:
        step = min(KEEP_CHECK_SECONDS, seconds - waited)
        ctx.sleep(step)
        waited += step
        if waited < seconds and success_written_meanwhile(ctx):
            # The operator's rerun succeeded (and is powering off): keeping is pointless, and a
            # keeping finalizer would hold up the shutdown until decon.service's stop timeout.
            ctx.log.event("FINALIZE_KEEP_ENDED", run_id=ctx.run_id, why=f"{SUCCESS} written")
            break
    # A rerun the operator started meanwhile finishes before this node goes down.
    with finalize_lock(Path(ctx.cfg.node.lock_file), ctx.log):
        pass


def success_written_meanwhile(ctx: Context) -> bool:
    """Whether `_SUCCESS` exists now; False when S3 cannot be asked (quietly: it is polled)."""
    try:
        return success_exists(ctx.storage, ctx.run_id)
    except StorageError:
        return False


# --- the end -----------------------------------------------------------------------------------


def finish(ctx: Context, result: FinalizeResult) -> FinalizeResult:
    """post-finalize hooks, then TERMINATING, the complete run log and the poweroff command
    (unless --no-poweroff)."""
    facts = ctx.facts(FINALIZE_STATUS=result.status)
    run_hooks(ctx.cfg.node.hooks_dir, "post-finalize", facts, ctx.log, hook_timeout(ctx))
    if not ctx.request.poweroff:
        ctx.log.event("POWEROFF_SKIPPED", run_id=ctx.run_id, reason="--no-poweroff")
        upload_final_log(ctx)
        return result
    ctx.log.event("TERMINATING", run_id=ctx.run_id, command=" ".join(ctx.cfg.node.poweroff_command))
    upload_final_log(ctx)
    result.powered_off = power_off(ctx.cfg.node.poweroff_command, ctx.log)
    return result


def power_off(command: Sequence[str], log: EventLog) -> bool:
    try:
        proc = subprocess.run(list(command), stdin=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.event("POWEROFF_FAILED", command=" ".join(command), error=str(exc))
        return False
    if proc.returncode != 0:
        log.event("POWEROFF_FAILED", command=" ".join(command), returncode=proc.returncode)
        return False
    return True


def describe_dry_run(ctx: Context) -> FinalizeResult:
    """Say what a real run would upload and write; change nothing (no lock, hooks, journal)."""
    say = ctx.log.line
    if success_exists(ctx.storage, ctx.run_id):
        say(f"dry run: {ctx.storage.uri(ctx.key(SUCCESS))} exists; would skip (FINALIZE_SKIPPED)")
        return FinalizeResult("dry_run", ctx.run_id)
    o = ctx.outcome
    say(
        f"dry run: run {ctx.run_id}: completion_status={o.completion_status} "
        f"exit_code={o.exit_code} reason={o.reason!r}"
    )
    if ctx.deadline:
        say(f"dry run: deadline {iso_utc(ctx.deadline)}")
    uris = []
    for artifact in outbox_artifacts(ctx.state.outbox, ctx.log):
        uris.append(ctx.storage.uri(ctx.key(artifact.name)))
        say(f"dry run: would upload {artifact.path} -> {uris[-1]}")
    for name, what in (
        (JOURNAL_NAME, f"journalctl -u {ctx.cfg.node.journal_unit} -o json (if available)"),
        (LOG_NAME, ctx.cfg.node.log_file),
        (MANIFEST_NAME, f"sha256 and size of {len(ctx.state.uploads())} job uploads + these"),
    ):
        uris.append(ctx.storage.uri(ctx.key(name)))
        say(f"dry run: would upload {what} -> {uris[-1]}")
    say(f"dry run: would write {ctx.storage.uri(ctx.key(SUCCESS))} (If-None-Match: *)")
    if ctx.request.poweroff:
        say(f"dry run: would run {' '.join(ctx.cfg.node.poweroff_command)}")
    return FinalizeResult("dry_run", ctx.run_id, artifacts=uris)


# --- command line ------------------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime:
    try:
        return parse_iso_utc(text)
    except ValueError:
        raise UserError(f"--deadline: not an ISO 8601 time: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decon-finalize",
        description="Upload this node's run artifacts, write the run sentinel, power off. "
        "Idempotent: safe to rerun after a failed upload.",
    )
    add_config_option(parser)
    parser.add_argument("--status", choices=("normal", "interrupted"), help="completion status")
    parser.add_argument("--exit-code", type=int, help="the job's exit code")
    parser.add_argument("--reason", help="why the job ended, in words")
    parser.add_argument(
        "--deadline", help="give up uploads rather than wait past this time (ISO 8601, UTC)"
    )
    parser.add_argument("--no-poweroff", action="store_true", help="do not power off at the end")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be uploaded and written; change nothing",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config)
    request = FinalizeRequest(
        status=args.status,
        exit_code=args.exit_code,
        reason=args.reason,
        deadline=parse_time(args.deadline) if args.deadline else None,
        poweroff=not args.no_poweroff,
        dry_run=args.dry_run,
    )
    log = EventLog(None if args.dry_run else cfg.node.log_file, sys.stdout)
    return finalize_run(cfg, request, log=log).exit_code


def main(argv: list[str] | None = None) -> int:
    return guarded_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
