"""`decon index`: build the reference index once and write it to a file, which `decon detect
--reference FILE` (and every worker) then maps instead of rebuilding it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from decon.detect.cli import add_option_flags, options_from_args
from decon.detect.indexfile import reference_digest, write_index
from decon.detect.reference import load_index
from decon.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", type=Path, required=True, help="Decon eval directory")
    parser.add_argument("--out", type=Path, required=True, help="index file to write")
    parser.add_argument("--config", type=Path, help="job file; its detect section gives defaults")
    add_option_flags(parser)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if options.mode != "simple":
        raise UserError(f"mode: index files are for mode simple, not {options.mode}")
    if not args.reference.exists():
        raise UserError(f"{args.reference}: reference directory not found")
    t0 = time.perf_counter()
    try:
        digest = reference_digest(args.reference)
        index = load_index(args.reference, options)
    except (OSError, ValueError) as exc:
        raise UserError(f"{args.reference}: {exc}") from None
    if index.stats.indexed == 0:
        raise UserError(f"{args.reference}: no eval records indexed")
    built = time.perf_counter() - t0
    try:
        write_index(index, args.out, digest)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    size = args.out.stat().st_size
    print(
        f"index: {index.stats.indexed} items ({options.tokenizer}, compat {options.compat}) "
        f"built in {built:.1f}s, {size / 1e6:.1f} MB: {args.out}"
    )
    return 0
