# ruff: noqa: SIM115  (handles are opened here and closed by the context managers)
"""Streaming JSONL readers and writers for plain and compressed files.

Compression follows the file name: .gz, .zst/.zstd, .bz2, .xz, or none. Readers yield raw
lines as bytes (newline included) so purified copies keep every kept line byte-for-byte.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from decon.errors import UserError

COMPRESSIONS = (".gz", ".zst", ".zstd", ".bz2", ".xz")
UTF8_BOM = b"\xef\xbb\xbf"
# What decompressors and file reads raise on a corrupt, truncated or mislabelled file
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)
GZIP_LEVEL = 6
# gzip member header: deflate, no flags, mtime 0, no extra flags, OS unknown (as GzipFile
# writes it at level 6 with mtime=0)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_DEFLATE_FINAL_EMPTY_BLOCK = b"\x03\x00"
DATA_SUFFIXES = (".jsonl", ".json")


def compression_of(path: Path | str) -> str:
    """The compression extension of a file name ('' when uncompressed)."""
    name = str(path)
    for ext in COMPRESSIONS:
        if name.endswith(ext):
            return ext
    return ""


def is_data_file(path: Path | str) -> bool:
    """True for .json/.jsonl files, plain or compressed."""
    name = str(path)
    ext = compression_of(name)
    stem = name[: len(name) - len(ext)] if ext else name
    return stem.endswith(DATA_SUFFIXES)


def strip_data_suffix(rel_name: str) -> str:
    """Remove the `.jsonl`/`.json` ending and any compression ending from a relative name."""
    ext = compression_of(rel_name)
    stem = rel_name[: len(rel_name) - len(ext)] if ext else rel_name
    for suffix in DATA_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _open_read(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(the file on disk, its decompressed stream); the caller closes both."""
    ext = compression_of(path)
    raw: IO[bytes] = open(path, "rb", buffering=1 << 20)
    try:
        if ext == ".gz":
            fh: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")
        elif ext in (".zst", ".zstd"):
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            fh = io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
        elif ext == ".bz2":
            fh = bz2.BZ2File(raw, "rb")
        elif ext == ".xz":
            fh = lzma.LZMAFile(raw, "rb")
        else:
            fh = raw
    except BaseException:
        raw.close()
        raise
    return raw, fh


@contextmanager
def open_binary_read(path: Path) -> Iterator[IO[bytes]]:
    """Open a possibly compressed file for streaming binary reading."""
    raw, fh = _open_read(path)
    try:
        yield fh
    finally:
        try:
            fh.close()
        finally:
            raw.close()


@contextmanager
def open_binary_write(path: Path, compression: str) -> Iterator[IO[bytes]]:
    """Open `path` for binary writing with the given compression extension.

    Gzip headers carry no name and no time, so equal content gives equal bytes (and equal
    ETags) on every rerun."""
    raw: IO[bytes] | None = None
    if compression == ".gz":
        raw = open(path, "wb")
        fh: IO[bytes] = gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0)
    elif compression in (".zst", ".zstd"):
        raw = open(path, "wb")  # noqa: SIM115
        fh = zstandard.ZstdCompressor(level=3).stream_writer(raw)  # type: ignore[assignment]
    elif compression == ".bz2":
        fh = bz2.open(path, "wb")
    elif compression == ".xz":
        fh = lzma.open(path, "wb")
    else:
        fh = open(path, "wb")  # noqa: SIM115
    try:
        yield fh
    finally:
        fh.close()
        if raw is not None:
            raw.close()


def deflate_part(data: bytes) -> bytes:
    """Raw deflate of `data`, ending byte-aligned and not final. Parts compressed on their own
    (in worker processes) concatenate into one valid deflate stream, as pigz does."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


class GzipFromParts:
    """One single-member gzip file written from `deflate_part` outputs in order: readers that
    stop after the first member (Rust's flate2 GzDecoder) still see every line."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._crc = 0
        self._size = 0
        fh.write(_GZIP_HEADER)

    def write_part(self, part: bytes, plain: Iterable[bytes]) -> None:
        """Append `part`, the `deflate_part` of the concatenation of `plain`."""
        for data in plain:
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
        self._fh.write(part)

    def close(self) -> None:
        """Final block and trailer (CRC-32 and size mod 2**32), then close the file."""
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        self._fh.write(_DEFLATE_FINAL_EMPTY_BLOCK + trailer)
        self._fh.close()


class UnreadableFile(UserError):
    """A data file that cannot be read to its end: corrupt, truncated, mislabelled, missing."""


def read_error_line(path: Path | str, exc: BaseException) -> str:
    """One line naming `path` and why reading it failed."""
    ext = compression_of(path)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, EOFError):
        return f"{path}: truncated {ext or 'file'} (ends before its end-of-stream marker)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{path}: cannot read: {exc.strerror or detail}"
    if ext:
        return f"{path}: not a valid {ext} file ({detail})"
    return f"{path}: cannot read ({detail})"


class LineReader:
    """The lines of a (compressed) file as bytes, newline included, and how far into the file
    on disk reading has got (for progress by bytes).

    A UTF-8 BOM at the start of the file is dropped unless `keep_bom` (purified copies keep
    every byte). A file that cannot be read to its end raises `UnreadableFile`."""

    def __init__(self, path: Path, keep_bom: bool = False) -> None:
        self.path = path
        self.keep_bom = keep_bom
        self._raw: IO[bytes] | None = None
        self._read = 0  # the position when the file was closed

    def position(self) -> int:
        """Bytes of the file on disk read so far."""
        if self._raw is None or self._raw.closed:
            return self._read
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self._read

    def __iter__(self) -> Iterator[bytes]:
        try:
            raw, fh = _open_read(self.path)
            self._raw = raw
            try:
                first = next(fh, None)
                if first is None:
                    return
                yield first if self.keep_bom else first.removeprefix(UTF8_BOM)
                yield from fh
            finally:
                self._read = self.position()
                try:
                    fh.close()
                finally:
                    raw.close()
        except READ_ERRORS as exc:
            raise UnreadableFile(read_error_line(self.path, exc)) from None


def iter_lines(path: Path, keep_bom: bool = False) -> Iterator[bytes]:
    """Yield each line of a (compressed) file (see `LineReader`)."""
    return iter(LineReader(path, keep_bom))


@dataclass
class ExtractedText:
    """Outcome of reading one training line."""

    text: str | None  # None when the line could not be used
    problem: str = ""  # "" | "malformed" | "missing_key" | "undecodable" | "blank"
    doc_id: Any = None
    keys: tuple[str, ...] = ()  # missing_key: the keys found where the path ended


def extract_text(line: bytes, content_key: str) -> ExtractedText:
    """Parse one JSON line and follow the dotted `content_key` to a string. A UTF-8 BOM before
    the JSON (a file's first line) is skipped."""
    stripped = line.strip().removeprefix(UTF8_BOM)
    if not stripped:
        return ExtractedText(None, "blank")
    obj = _fast_json(stripped)
    if obj is None:
        try:
            decoded = stripped.decode("utf-8")
        except UnicodeDecodeError:
            return ExtractedText(None, "undecodable")
        try:
            obj = json.loads(decoded)
        except ValueError:
            return ExtractedText(None, "malformed")
    if not isinstance(obj, dict):
        return ExtractedText(None, "malformed")
    doc_id = obj.get("id", obj.get("doc_id"))
    value: Any = obj
    path = ""
    for part in content_key.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = tuple(path + str(k) for k in value) if isinstance(value, dict) else ()
            return ExtractedText(None, "missing_key", doc_id, keys)
        value = value[part]
        path += part + "."
    if not isinstance(value, str):
        return ExtractedText(None, "missing_key", doc_id, (f"{content_key} ({_kind(value)})",))
    return ExtractedText(value, "", doc_id)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fast_json(data: bytes) -> dict | None:
    """orjson's parse of a JSON object, or None to leave the line to `json`: orjson rejects
    what `json` accepts (lone surrogate escapes, NaN) and reads integers beyond 64 bits as
    floats, so ids that come back as floats are re-read too."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or isinstance(obj.get("id", obj.get("doc_id")), float):
        return None
    return obj


def atomic_temp(path: Path) -> Path:
    """A temporary sibling name for `path` (rename it into place when complete)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")
