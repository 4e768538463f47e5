"""Detection options: names and defaults follow Decon's simple mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DetectOptions:
    """Options of `decon detect` and of the `detect` section of the job file."""

    mode: str = "simple"  # simple | minhash | toxic
    tokenizer: str = "word"  # word | p50k | cl100k
    content_key: str = "text"  # dotted path into each JSON line
    ngram_size: int = 5
    sample_every_m_tokens: int = 10
    question_max_consecutive_misses: int = 11
    contamination_score_threshold: float = 0.8
    purify: bool = False
    workers: int = 0  # 0 = all cores

    def validate(self) -> list[str]:
        """Return problems as 'key: message' strings (empty when valid)."""
        problems = []
        if self.mode not in ("simple", "minhash", "toxic"):
            problems.append(f"mode: must be simple, minhash or toxic, not {self.mode!r}")
        if self.tokenizer not in ("word", "p50k", "cl100k"):
            problems.append(f"tokenizer: must be word, p50k or cl100k, not {self.tokenizer!r}")
        if self.ngram_size < 1:
            problems.append("ngram_size: must be >= 1")
        if self.sample_every_m_tokens < 1:
            problems.append("sample_every_m_tokens: must be >= 1")
        if not 0.0 < self.contamination_score_threshold <= 1.0:
            problems.append("contamination_score_threshold: must be in (0, 1]")
        return problems
