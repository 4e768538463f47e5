"""`decon run`: the node's job (SPEC sections 4 and 6). See decon.jobrun.job for exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import signal
from collections.abc import Callable

from decon.config import Config, add_config_option, load_config
from decon.errors import UserError
from decon.eventlog import EventLog
from decon.jobrun.detect_step import load_factory
from decon.jobrun.job import JobContext, run_job
from decon.jobrun.signals import StopRequest, install_handlers
from decon.node.notify import Notifier


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the input, take this host's shard (md5 of the relative key mod host count), "
        "skip files already done, then download, detect and upload each file. "
        "Exit 0: all assigned files done; 1: some files failed; 2: bad input; "
        "3: could not list input/reference; 143/130: stopped by SIGTERM/SIGINT."
    )
    add_config_option(parser)
    parser.add_argument("--host-index", type=int, help="this host's index (over PMR_HOST_INDEX)")
    parser.add_argument("--host-count", type=int, help="number of hosts (over PMR_HOST_COUNT)")
    parser.add_argument(
        "--max-files",
        type=int,
        help="debug: process at most N files, upload nothing (MAX_FILES_DEBUG)",
    )
    parser.add_argument("--work-dir", help="scratch directory (default {node.state_dir}/work)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print this host's files to do and exit"
    )
    parser.add_argument(
        "--detector",
        metavar="MODULE:FUNCTION",
        help="a detector factory (config, reference_dir) -> detector; default: decon's own",
    )


def imds_launch_index(cfg: Config) -> Callable[[], int | None]:
    """Reads `ami-launch-index` through the node's IMDSv2 client (decon.node.imds)."""

    def lookup() -> int | None:
        spot = cfg.spot
        try:
            from decon.node.imds import ImdsClient

            with ImdsClient(
                spot.imds_endpoint, spot.token_ttl_seconds, spot.request_timeout_seconds
            ) as client:
                text = client.get("ami-launch-index")
        except Exception as exc:
            raise UserError(
                f"run.host_index_from_imds: cannot read ami-launch-index from "
                f"{spot.imds_endpoint}: {exc}"
            ) from None
        return int(text) if text and text.strip().isdigit() else None

    return lookup


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    job = cfg.job
    if args.host_count is not None:
        job = dataclasses.replace(job, host_count=args.host_count)
    if args.host_index is not None:
        job = dataclasses.replace(job, host_index=args.host_index)
    if args.max_files is not None:
        job = dataclasses.replace(job, max_files_debug=args.max_files)
    cfg = dataclasses.replace(cfg, job=job)
    if args.work_dir:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, work_dir=args.work_dir))
    from decon.config import ConfigError, validate

    problems = validate(cfg)
    if problems:
        raise ConfigError(problems[0])
    log = EventLog(cfg.node.log_file)
    notifier = Notifier()
    stop = StopRequest()

    def on_first(signum: int) -> None:
        name = signal.Signals(signum).name
        log.event("STOP_REQUESTED", signal=name, action="finishing uploads, no new files")
        notifier.status(f"stopping ({name}): publishing finished files")

    install_handlers(stop, on_first)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the journal): for a stuck job
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    ctx = JobContext(
        log,
        notifier,
        stop,
        detector_factory=load_factory(args.detector),
        imds_launch_index=imds_launch_index(cfg),
        dry_run=args.dry_run,
    )
    return run_job(cfg, ctx)
