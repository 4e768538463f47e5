"""User-facing errors: one clear line, non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, unknown key).

    Command entry points catch it and print ``decon: <message>`` to stderr.
    """

    exit_code = 2


def guarded_main(fn, argv=None) -> int:  # type: ignore[no-untyped-def]
    """Run a command's main function; user errors become one line on stderr and exit 2."""
    import sys

    try:
        return int(fn(argv) or 0)
    except UserError as exc:
        print(f"{_prog()}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{_prog()}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def _prog() -> str:
    import os
    import sys

    return os.path.basename(sys.argv[0]) or "decon"
