"""A built reference index as one file, memory-mapped when opened.

Layout: MAGIC, the header's length (8 bytes, little-endian), the header (JSON: format version,
the digest of the reference's content, the digest of the options that shape the index, the
offsets of the arrays), the pickled index (protocol 5, its numpy arrays out of band), then each
array's bytes at a 64-byte boundary. Opening reads the header, rejects an index of another
format, reference or options with one line, and unpickles the rest over the mapped file: the
arrays are read-only views of the page cache, one copy for every process of the node.

Only files this program wrote are opened (the job's own bucket, or a path the user gave).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import pickle
import struct
from pathlib import Path

from decon.detect.io import is_data_file
from decon.detect.options import DetectOptions
from decon.detect.reference import ReferenceIndex
from decon.errors import UserError

MAGIC = b"DECONIDX"
FORMAT_VERSION = 4
_ALIGN = 64
MAX_HEADER_BYTES = 64 << 20
# Options that only say how a job runs, not what the index holds.
RUN_ONLY_OPTIONS = frozenset({"content_key", "purify", "workers", "chunk_lines"})


def reference_digest(path: Path) -> str:
    """sha256 over the names (relative) and bytes of the reference files under `path`."""
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and is_data_file(p))
    )
    digest = hashlib.sha256()
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(name.encode() + b"\0" + str(file.stat().st_size).encode() + b"\0")
        with open(file, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def options_digest(options: DetectOptions) -> str:
    """sha256 of the options that shape the index (all but `RUN_ONLY_OPTIONS`)."""
    shaping = {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name not in RUN_ONLY_OPTIONS
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def index_name(reference: str, options: DetectOptions) -> str:
    """The file name of the index of a reference digest and options (a cache key)."""
    return f"{reference[:16]}-{options_digest(options)[:16]}-v{FORMAT_VERSION}.index"


def write_index(index: ReferenceIndex, path: Path, reference: str) -> None:
    """Write `index` to `path` (atomically: a temporary name, then a rename)."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(index, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    header = {
        "format": FORMAT_VERSION,
        "reference": reference,
        "options": options_digest(index.options),
        "tokenizer": index.options.tokenizer,
        "items": len(index.items),
        "pickle": len(body),
        "buffers": [],
    }
    # The header holds the offsets, which depend on its own length: fix its size first.
    header_size = len(json.dumps(header)) + 24 * len(views) + 64
    at = _aligned(len(MAGIC) + 8 + header_size + len(body))
    for view in views:
        header["buffers"].append([at, view.nbytes])
        at = _aligned(at + view.nbytes)
    raw = json.dumps(header).encode()
    assert len(raw) <= header_size
    raw = raw.ljust(header_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + struct.pack("<Q", len(raw)) + raw + body)
            for (offset, _), view in zip(header["buffers"], views, strict=True):
                fh.write(b"\0" * (offset - fh.tell()))
                fh.write(view)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _aligned(at: int) -> int:
    return -(-at // _ALIGN) * _ALIGN


def read_header(path: Path) -> dict:
    """The header of an index file (a clear error when `path` is not one)."""
    try:
        with open(path, "rb") as fh:
            lead = fh.read(len(MAGIC) + 8)
            if len(lead) < len(MAGIC) + 8 or not lead.startswith(MAGIC):
                raise UserError(f"{path}: not a decon index file")
            (size,) = struct.unpack("<Q", lead[len(MAGIC) :])
            if size > MAX_HEADER_BYTES:
                raise UserError(f"{path}: damaged index header")
            header = json.loads(fh.read(size))
            if not isinstance(header, dict):
                raise UserError(f"{path}: damaged index header")
            return header
    except OSError as exc:
        raise UserError(f"{path}: cannot read index: {exc.strerror or exc}") from None
    except ValueError:  # (json's errors, a bad UTF-8 header)
        raise UserError(f"{path}: damaged index header") from None


def is_index_file(path: Path) -> bool:
    """True when `path` is a file starting like an index file."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_index(path: Path, options: DetectOptions, reference: str | None = None) -> ReferenceIndex:
    """The index in `path`, its arrays mapped from the file. Rejected (UserError, one line)
    when it is of another format version, was built with other options, or (given the
    `reference` digest) from another reference."""
    path = Path(path)
    header = read_header(path)
    if header.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path}: index format {header.get('format')} is not this version's "
            f"({FORMAT_VERSION}); rebuild it with `decon index`"
        )
    if header.get("options") != options_digest(options):
        raise UserError(
            f"{path}: index was built with other detection options; rebuild it with "
            "`decon index` and the same options"
        )
    if reference is not None and header.get("reference") != reference:
        raise UserError(
            f"{path}: index was built from another reference (content differs); rebuild it"
        )
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    start = len(MAGIC) + 8 + struct.unpack("<Q", view[len(MAGIC) : len(MAGIC) + 8])[0]
    try:
        body = view[start : start + header["pickle"]]
        buffers = [view[offset : offset + size] for offset, size in header["buffers"]]
        if any(len(b) != size for b, (_, size) in zip(buffers, header["buffers"], strict=True)):
            raise ValueError("truncated")
        index = pickle.loads(body, buffers=buffers)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: damaged index ({exc})") from None
    if not isinstance(index, ReferenceIndex):
        raise UserError(f"{path}: not a decon index file")
    return dataclasses.replace(index, options=options)
