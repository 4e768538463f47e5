"""Made-up words for synthetic eval items: sentences no real text shares a run with."""

from __future__ import annotations

import random

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()  # noqa: SIM905


def sentence(rng: random.Random, n: int) -> str:
    """`n` words, each a WORDS entry with a number glued on (rarely repeated)."""
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(n))
