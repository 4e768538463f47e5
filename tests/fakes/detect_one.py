"""One document through the simple mode's detector (a batch of one)."""

from __future__ import annotations

from decon.detect.match import Match
from decon.detect.reference import ReferenceIndex
from decon.detect.simple import SimpleDetector


def detect_text(text: str, index: ReferenceIndex) -> tuple[list[Match], bool]:
    """The matches in `text`, and whether it was scanned."""
    (found,) = SimpleDetector(index).detect_batch([text])
    return found.matches, found.scanned
