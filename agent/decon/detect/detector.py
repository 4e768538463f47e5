"""One interface over the detection modes: a document's text in, report fields out.

Each mode (simple, minhash, toxic) builds its own index from the same eval record format and
exposes a `DocumentDetector`; the file pipeline, `decon detect` and `decon run` only use this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats
from decon.detect.reference import ReferenceIndex, load_index
from decon.detect.report import simple_fields
from decon.detect.simple import detect_text, detect_words
from decon.errors import UserError

# Report fields of one match, without the training location (see `report.report_line`).
MatchFields = dict[str, Any]


class DocumentDetector(Protocol):
    """Finds eval items in one training document (pure apart from CPU; shared with workers)."""

    options: DetectOptions
    stats: ReferenceStats

    def detect(self, text: str) -> tuple[list[MatchFields], bool]:
        """Report fields per match, and whether the document was fully scanned."""
        ...


class ChunkPrefiltering(Protocol):
    """Optional: a detector that can rule documents out a whole chunk at a time."""

    def select(self, texts: list[str]) -> list[Any | None]:
        """Per text: what `detect_selected` needs of it (for simple mode a `SelectedText`),
        or None when it cannot match (lossless)."""
        ...

    def detect_selected(self, text: str, selected: Any) -> tuple[list[MatchFields], bool]:
        """`detect` for a text `select` kept, with what `select` gave for it (no
        per-document prefilter)."""
        ...


@dataclass(frozen=True)
class SelectedText:
    """A text the chunk prefilter kept: its normalised words; `scan` False when no n-gram
    cluster can score; `anchors` the word anchors of the alignment rules that can occur, as
    (word position, run) (None: not known, look them up; empty: none, no alignment step)."""

    words: list[str]
    scan: bool = True
    anchors: list[tuple[int, tuple[str, ...]]] | None = None


class SimpleDetector:
    """Decon's simple mode over a `ReferenceIndex`."""

    def __init__(self, index: ReferenceIndex) -> None:
        self.index = index
        self.options = index.options
        self.stats = index.stats
        unfiltered = dataclasses.replace(index.options, prefilter=False)
        self._selected_index = dataclasses.replace(index, options=unfiltered)

    def detect(self, text: str) -> tuple[list[MatchFields], bool]:
        matches, scanned = detect_text(text, self.index)
        return [simple_fields(m) for m in matches], scanned

    def select(self, texts: list[str]) -> list[SelectedText | None]:
        punctuation = self.options.punctuation_chars
        if not self.options.prefilter:
            return [SelectedText(normalized_words(t, punctuation)) for t in texts]
        prefilter = self.index.prefilter
        chunk = prefilter.select_anchored(texts, punctuation)
        if chunk.marks is None:
            return [
                None if words is None else SelectedText(words, selected)
                for words, selected in zip(chunk.words, chunk.selected, strict=True)
            ]
        runs = prefilter.anchor_runs
        return [
            None
            if words is None
            else SelectedText(words, selected, [(p, runs[a]) for p, a in places or ()])
            for words, selected, places in zip(
                chunk.words, chunk.selected, chunk.marks, strict=True
            )
        ]

    def detect_selected(self, text: str, selected: SelectedText) -> tuple[list[MatchFields], bool]:
        matches, scanned = detect_words(
            text, selected.words, self._selected_index, selected.scan, selected.anchors
        )
        return [simple_fields(m) for m in matches], scanned


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
