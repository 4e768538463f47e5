"""User-facing errors: one clear line, non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, unknown key).

    Command entry points catch it and print ``decon: <message>`` to stderr.
    """

    exit_code = 2


def decode_errors() -> tuple[type[BaseException], ...]:
    """What decoders and decompressors raise on bad bytes (a corrupt or mislabelled file)."""
    import lzma
    import zlib

    import zstandard

    # EOFError: a truncated gzip/bz2/xz stream; gzip's BadGzipFile is an OSError the
    # commands already name with their file
    return (UnicodeDecodeError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


def guarded_main(fn, argv=None) -> int:  # type: ignore[no-untyped-def]
    """Run a command's main function; user errors become one line on stderr and exit 2, and
    so does a decode or decompression error that reached the edge unnamed."""
    import sys

    try:
        return int(fn(argv) or 0)
    except UserError as exc:
        print(f"{_prog()}: {exc}", file=sys.stderr)
        return exc.exit_code
    except decode_errors() as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{_prog()}: corrupt input: {type(exc).__name__}: {detail}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print(f"{_prog()}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def _prog() -> str:
    import os
    import sys

    return os.path.basename(sys.argv[0]) or "decon"
