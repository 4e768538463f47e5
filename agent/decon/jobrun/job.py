"""`decon run` as a function: plan this host's share, run the pipeline, report progress.

Exit codes (documented in the README; the wrapper turns any non-zero into
`completion_status=interrupted`, and the sentinel's `files` counts say what happened):

    0    every assigned file is done (now or by an earlier run); nothing assigned is also 0
    1    the pass finished but some files failed (listed in progress.json `failed_files`);
         a later run retries exactly those
    2    user error: bad config, missing bucket, no input files, unreadable reference
    3    the job could not run: listing the input or fetching the reference failed after
         retries (transient S3 trouble that outlasted the backoff)
    143  stopped by SIGTERM (130 by SIGINT): finished files were published, the rest were not
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from decon.config import Config
from decon.errors import UserError
from decon.eventlog import EventLog, one_line
from decon.jobrun.detect_step import DetectorFactory, builtin_detector
from decon.jobrun.endpoints import JobOutputs, JobStorage, open_source
from decon.jobrun.file_stages import FileStages, Publisher, StageSettings, reset_scratch
from decon.jobrun.heartbeat import HEARTBEAT_NAME
from decon.jobrun.inputs import FilePlan, Plan, make_plan
from decon.jobrun.progress import FailedFile, Progress
from decon.jobrun.signals import StopRequest, exit_code_for_signal
from decon.jobrun.workqueue import Leases, WorkQueue, queue_files
from decon.node.capacity import protect_from_scale_in
from decon.node.notify import Notifier
from decon.node.state import NodeState
from decon.storage import is_storage_trouble, named_for_user, open_storage

EXIT_DONE = 0
EXIT_FILES_FAILED = 1
EXIT_CANNOT_RUN = 3

MB = 1 << 20


@dataclass
class JobContext:
    """Everything `run_job` talks to besides the config (injected, so tests can swap parts)."""

    log: EventLog
    notifier: Notifier
    stop: StopRequest
    detector_factory: DetectorFactory = builtin_detector
    imds_launch_index: Callable[[], int | None] | None = None  # the IMDS seam (decon.node.imds)
    dry_run: bool = False


def resolve_host(cfg: Config, imds_launch_index: Callable[[], int | None] | None) -> int:
    """This host's index: `job.host_index` (PMR_HOST_INDEX), or IMDS `ami-launch-index` when
    `run.host_index_from_imds` is set."""
    if not cfg.run.host_index_from_imds:
        return cfg.job.host_index
    if imds_launch_index is None:
        raise UserError("run.host_index_from_imds: no IMDS client available")
    index = imds_launch_index()
    if index is None or not 0 <= index < cfg.job.host_count:
        raise UserError(
            f"run.host_index_from_imds: ami-launch-index {index} is not in "
            f"0..{cfg.job.host_count - 1} (job.host_count)"
        )
    return index


def instance_name(cfg: Config) -> str:
    return cfg.node.instance_id or socket.gethostname().split(".")[0] or "localhost"


def fetch_reference(uri: str, io: JobStorage, work: Path, log: EventLog) -> Path:
    """The local directory of reference (eval) files `reference.uri`: the configured directory
    itself, or the S3 prefix downloaded once into `work/reference` (files already there with
    the same size are kept, so a restarted job does not download them again)."""
    if not uri:
        raise UserError("reference.uri: not set (an s3:// prefix or a local directory)")
    if not uri.startswith("s3://"):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise UserError(f"reference.uri: {path} does not exist")
        return path
    target = work / "reference"
    storage = io.open(uri if uri.endswith("/") else uri + "/")
    log.event("WAITING", on=f"list reference {uri}")
    with named_for_user("reference.uri", uri):
        listed = io.call(f"list {uri}", lambda: list(storage.list()))
    objects = [o for o in listed if not o.key.endswith("/")]
    if not objects:
        raise UserError(f"reference.uri: no objects under {uri}")
    fetched = 0
    for obj in objects:
        dest = target / obj.key
        if dest.exists() and dest.stat().st_size == obj.size:
            continue
        io.call(
            f"download {storage.uri(obj.key)}", lambda o=obj, d=dest: storage.get_file(o.key, d)
        )
        fetched += 1
    log.event("REFERENCE_READY", uri=uri, files=len(objects), downloaded=fetched, dir=target)
    return target


class Ticker:
    """Every `seconds` (and once at the end): progress.json, systemd STATUS, heartbeat object."""

    def __init__(
        self,
        seconds: float,
        progress: Progress,
        state: NodeState,
        notifier: Notifier,
        put_heartbeat: Callable[[str], None] | None,
        log: EventLog,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.seconds = seconds
        self.on_beat = on_beat
        self.progress = progress
        self.state = state
        self.notifier = notifier
        self.put_heartbeat = put_heartbeat
        self.log = log
        self.heartbeat_state = "running"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._lock = threading.Lock()
        self._heartbeat_error_logged = False

    def start(self) -> None:
        self.tick(heartbeat=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            self.tick(heartbeat=True)

    def tick(self, heartbeat: bool = False) -> None:
        """Local updates always (cheap); the S3 heartbeat only when asked."""
        with self._lock:
            self.state.write_progress(self.progress.to_progress_json())
            self.notifier.status(self.progress.status_line())
            if heartbeat and self.on_beat is not None:
                self.on_beat()
            if heartbeat and self.put_heartbeat is not None:
                try:
                    self.put_heartbeat(self.heartbeat_state)
                except Exception as exc:  # a missed heartbeat never stops the job
                    if not self._heartbeat_error_logged:
                        self.log.event("HEARTBEAT_FAILED", error=one_line(exc))
                        self._heartbeat_error_logged = True

    def finish(self, final_state: str) -> None:
        self._stop.set()
        self._thread.join()
        self.heartbeat_state = final_state
        self.tick(heartbeat=True)


def run_job(cfg: Config, ctx: JobContext) -> int:
    """Run this host's share of the job; returns the exit code (see the module docstring)."""
    log, stop = ctx.log, ctx.stop
    state = NodeState(cfg.node.state_dir)
    host_index = resolve_host(cfg, ctx.imds_launch_index)
    host_count = cfg.job.host_count
    instance = instance_name(cfg)
    debug = cfg.job.max_files_debug
    work = cfg.work_dir()

    def on_retry(what: str, attempt: int, exc: BaseException, wait: float) -> None:
        log.event("S3_RETRY", op=what, attempt=attempt, wait=f"{wait:.1f}", error=one_line(exc))

    queued = cfg.run.queued
    log.event(
        "RUN_START",
        host_index=host_index,
        host_count=host_count,
        input=cfg.input.uri,
        distribution="queue" if queued else "shard",
        debug_max_files=debug,
    )
    # said before the S3 clients are built (a second or more on a small node)
    waiting_on = "the job queue" if queued else f"list input {cfg.input.uri}"
    log.event("WAITING", on=waiting_on)
    io = JobStorage.for_job(cfg.run, cfg.aws, on_retry)
    work_queue: WorkQueue | None = None
    try:
        source = open_source(cfg.input.uri, io)
        outputs = JobOutputs(cfg.output_prefix("reports"), cfg.output_prefix("cleaned"), io)
        if queued:
            work_queue = WorkQueue.open(cfg, on_retry)
            counts = work_queue.counts()
        else:
            inputs = source.list()
            if not inputs:
                raise UserError(f"input.uri: no objects under {source.uri}")
            log.event("WAITING", on=f"list done files {outputs.reports_uri}")
            done_keys = outputs.done_keys()
    except Exception as exc:
        if not is_storage_trouble(exc):
            raise
        log.event("RUN_ABORTED", stage="list", error=one_line(exc))
        return EXIT_CANNOT_RUN

    files: Iterable[FilePlan]
    leases: Leases | None = None
    if work_queue is not None:
        progress = Progress()
        log.event(
            "JOB_QUEUE",
            queue=work_queue.url,
            visible=counts.visible,
            in_flight=counts.in_flight,
            dead_letter=counts.dead,
        )
        if ctx.dry_run:
            print(f"{work_queue.url}\tvisible={counts.visible}\tin_flight={counts.in_flight}")
            return EXIT_DONE
        has_work = counts.visible + counts.in_flight > 0
        protect_from_scale_in(cfg, instance, log)
        leases = Leases(
            work_queue,
            slots=cfg.run.download_concurrency + 1,
            on_error=lambda what, exc: log.event("QUEUE_ERROR", op=what, error=one_line(exc)),
        )
        files = received_files(work_queue, leases, outputs, progress, log, stop)
    else:
        plan = make_plan(inputs, host_index, host_count, done_keys, limit=debug)
        if plan.total_inputs == 0:
            raise UserError(
                f"input.uri: no .json/.jsonl files (plain or compressed) in {source.uri}"
            )
        progress = progress_for(plan)
        log.event(
            "JOB_PLAN",
            host_index=host_index,
            host_count=host_count,
            inputs=plan.total_inputs,
            assigned=plan.shard_size,
            max_files_debug=debug,
            already_done=progress.skipped,
            todo=len(plan.todo),
            todo_bytes=progress.bytes_total,
            collisions=len(plan.collisions),
        )
        for fp, other in plan.collisions:
            log.event(
                "FILE_FAILED", file=fp.input.rel, stage="plan", error=f"same basename as {other}"
            )
        if ctx.dry_run:
            for fp in plan.todo:
                print(f"{fp.input.size}\t{fp.input.location}")
            return EXIT_DONE
        has_work = bool(plan.todo)
        files = plan.todo

    run_id = state.run_id() or state.start_run(cfg.node.instance_id)
    runs_storage = None if debug else open_storage(cfg.output_prefix("runs"), cfg.aws, attempts=1)

    def put_heartbeat(state_name: str) -> None:
        assert runs_storage is not None
        beat = progress.heartbeat(run_id, cfg.job.id, instance, host_index, host_count, state_name)
        runs_storage.put_bytes(f"{run_id}/{HEARTBEAT_NAME}", beat.to_json())

    ticker = Ticker(
        cfg.run.heartbeat_seconds,
        progress,
        state,
        ctx.notifier,
        None if debug else put_heartbeat,
        log,
        on_beat=None if leases is None else leases.extend_all,
    )
    ticker.start()
    final_state = "done"
    try:
        if has_work and not stop():
            try:
                reference = fetch_reference(cfg.reference.uri, io, work, log)
            except Exception as exc:
                if not is_storage_trouble(exc):
                    raise
                log.event("RUN_ABORTED", stage="reference", error=one_line(exc))
                final_state = "stopping"
                return EXIT_CANNOT_RUN
            detector = ctx.detector_factory(cfg, reference)
            scratch = work / "jobrun"
            reset_scratch(scratch)
            stages = FileStages(
                files,
                source,
                detector,
                None if debug else Publisher(outputs, state),
                StageSettings(
                    download_concurrency=cfg.run.download_concurrency,
                    upload_concurrency=cfg.run.upload_concurrency,
                    max_disk_bytes=cfg.run.max_disk_mb * MB,
                    purify=cfg.detect.purify,
                ),
                progress,
                log,
                stop,
                scratch,
                on_change=ticker.tick,
                outcomes=leases,
            )
            stages.run()
            if debug:
                print(
                    f"decon run: MAX_FILES_DEBUG={debug}: nothing uploaded; results in "
                    f"{scratch / 'outputs'} (inputs in {scratch / 'inputs'})"
                )
        if stop():
            final_state = "stopping"
    finally:
        if leases is not None:
            leases.release_all()  # anything still held goes back to the queue at once
        ticker.finish(final_state)
    code = exit_code(progress, stop)
    log.event(
        "RUN_SUMMARY",
        run_id=run_id,
        assigned=progress.assigned,
        done=progress.done,
        contaminated=progress.contaminated,
        failed=progress.failed,
        skipped=progress.skipped,
        mb=f"{progress.bytes_done / MB:.1f}",
        mb_s=f"{progress.rate_mb_s():.1f}",
        stopped_by=_signal_name(stop.signum) if stop() else None,
        exit_code=code,
    )
    return code


def received_files(
    work_queue: WorkQueue,
    leases: Leases,
    outputs: JobOutputs,
    progress: Progress,
    log: EventLog,
    stop: StopRequest,
) -> Iterator[FilePlan]:
    """The queue's files as this host receives them, counted as assigned; a redelivered file
    that is already done is skipped."""

    def skipped(fp: FilePlan) -> None:
        progress.file_already_done()
        log.event("FILE_SKIPPED", file=fp.input.rel, why="already done (redelivered message)")

    def is_done(fp: FilePlan) -> bool:
        return outputs.is_done(fp.report, fp.marker)

    for fp in queue_files(work_queue, leases, is_done, skipped, stop):
        progress.file_assigned(fp.input.size)
        log.event("FILE_RECEIVED", file=fp.input.rel, bytes=fp.input.size)
        yield fp


def progress_for(plan: Plan) -> Progress:
    progress = Progress(assigned=len(plan.assigned))
    progress.skipped = len(plan.done_contaminated) + len(plan.done_clean)
    progress.done = progress.skipped
    progress.contaminated = len(plan.done_contaminated)
    progress.bytes_total = sum(fp.input.size for fp in plan.todo)
    for fp, other in plan.collisions:
        progress.file_failed(
            FailedFile(fp.input.rel, fp.input.location, "plan", f"same basename as {other}")
        )
    return progress


def exit_code(progress: Progress, stop: StopRequest) -> int:
    """0 when every assigned file is done (even if a stop came after the last one)."""
    if progress.done >= progress.assigned:
        return EXIT_DONE
    if stop():
        return exit_code_for_signal(stop.signum) if stop.signum else 143
    if progress.failed:
        return EXIT_FILES_FAILED
    return EXIT_DONE


def _signal_name(signum: int | None) -> str | None:
    import signal

    return signal.Signals(signum).name if signum else "request"
