"""`decon render-user-data --config job.yaml [--host-index I --host-count N] [-o FILE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from decon.config import ConfigError, load_config, require_job
from decon.fleet.userdata import render_user_data


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the job file (YAML)")
    parser.add_argument("--host-index", type=int, help="this node's shard (default: job file)")
    parser.add_argument("--host-count", type=int, help="number of nodes (default: job file)")
    parser.add_argument("-o", "--output", help="write here instead of stdout")


def run(args: argparse.Namespace) -> int:
    """Render, validate and print (or write) one node's cloud-init user-data."""
    cfg = load_config(args.config)
    require_job(cfg, "render-user-data")
    text = render_user_data(cfg, args.host_index, args.host_count)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise ConfigError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
    return 0
