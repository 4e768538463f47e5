"""The detection contract: `DocumentDetector`, a batch of training documents' texts in, per
document its `Findings` out.

Each mode (simple, minhash, toxic) builds its own index from the same eval record format and
implements it; the file pipeline, `decon detect` and `decon run` use nothing else of a mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from decon.detect.match import Findings
from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats
from decon.detect.reference import load_index
from decon.detect.simple import SimpleDetector
from decon.errors import UserError


class DocumentDetector(Protocol):
    """Finds eval items in training documents (pure apart from CPU: one detector is shared
    by forked workers)."""

    options: DetectOptions
    stats: ReferenceStats

    def detect_batch(self, texts: list[str]) -> list[Findings]:
        """What was found in each text, in order. A batch is any number of texts; a mode may
        rule many of them out in one pass (the simple mode's prefilter)."""
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
