"""`decon <command>`: each command lives in its own module and is imported only when used.

A command module provides `configure(parser: argparse.ArgumentParser)` and
`run(args: argparse.Namespace) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from decon import __version__
from decon.errors import UserError, guarded_main

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": (
        "decon.detect.cli",
        "local detection: training files -> reports (+ purified copies)",
    ),
    "index": (
        "decon.detect.indexcli",
        "build a reference index file once (detect --reference FILE maps it)",
    ),
    "run": ("decon.jobrun.cli", "the node's job: this host's shard of the S3 input, per file"),
    "render-user-data": ("decon.fleet.userdata_cli", "job file -> cloud-init user-data"),
    "launch": ("decon.fleet.launch", "start a spot fleet for a job (or --add nodes to it)"),
    "stop": ("decon.fleet.stop", "cancel a queue job: its group to 0, nodes finalize"),
    "status": ("decon.fleet.status", "show a job's progress from EC2 and S3"),
    "review": ("decon.fleet.review", "read reports: counts per eval, top matches, context"),
    "evals": (
        "decon.evals.cli",
        "reference sets: build from benchmark datasets (Decon's evals config), stats",
    ),
    "compare": ("decon.fleet.compare", "two report sets: matches in both, only in A, only in B"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decon",
        description="Training-data decontamination on self-cleaning EC2 spot fleets.",
        epilog="commands:\n"
        + "\n".join(f"  {name:<18} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nRun 'decon COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"decon {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        _top_parser().print_help(sys.stderr)  # the commands, rather than a bare usage error
        return 2
    if argv[0].startswith("-"):
        _top_parser().parse_args(argv)  # prints help/version, or an error for no command
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _top_parser().parse_args([name])  # argparse's "invalid choice" message, exit 2
    module_name, text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"{name}: not available in this version") from None
        raise
    parser = argparse.ArgumentParser(prog=f"decon {name}", description=text)
    module.configure(parser)
    return int(module.run(parser.parse_args(rest)) or 0)


def main(argv: list[str] | None = None) -> int:
    """Console entry point of `decon`."""
    return guarded_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
