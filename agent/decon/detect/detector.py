"""One interface over the detection modes: a document's text in, report fields out.

Each mode (simple, minhash, toxic) builds its own index from the same eval record format and
exposes a `DocumentDetector`; the file pipeline, `decon detect` and `decon run` only use this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from decon.detect.match import Match
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats
from decon.detect.reference import load_index
from decon.detect.simple import SimpleDetector
from decon.errors import UserError


class DocumentDetector(Protocol):
    """Finds eval items in one training document (pure apart from CPU; shared with workers)."""

    options: DetectOptions
    stats: ReferenceStats

    def detect(self, text: str) -> tuple[list[Match], bool]:
        """Report fields per match, and whether the document was fully scanned."""
        ...


class ChunkPrefiltering(Protocol):
    """Optional: a detector that can rule documents out a whole chunk at a time."""

    def select(self, texts: list[str]) -> list[Any | None]:
        """Per text: what `detect_selected` needs of it (for simple mode a `SelectedText`),
        or None when it cannot match (lossless)."""
        ...

    def detect_selected(self, text: str, selected: Any) -> tuple[list[Match], bool]:
        """`detect` for a text `select` kept, with what `select` gave for it (no
        per-document prefilter)."""
        ...


def load_detector(reference: Path | str, options: DetectOptions) -> DocumentDetector:
    """Build the detector of `options.mode` from a Decon eval file or directory tree."""
    if options.mode == "simple":
        from decon.detect.indexfile import is_index_file, open_index

        path = Path(reference)
        if path.is_file() and is_index_file(path):
            return SimpleDetector(open_index(path, options))
        return SimpleDetector(load_index(path, options))
    if Path(reference).is_file():
        from decon.detect.indexfile import is_index_file

        if is_index_file(Path(reference)):
            raise UserError(f"{reference}: index files are for mode simple, not {options.mode}")
    if options.mode == "minhash":
        from decon.detect.minhash import load_minhash

        return load_minhash(Path(reference), options)
    if options.mode == "toxic":
        from decon.detect.toxic import load_toxic

        return load_toxic(Path(reference), options)
    raise UserError(f"mode: {options.mode} is not a detection mode (simple, minhash, toxic)")
