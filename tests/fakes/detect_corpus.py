"""A small reference of four synthetic questions and documents that quote two of them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fakes.words import sentence


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    rng = random.Random(0)
    questions = [sentence(rng, 30) for _ in range(4)]
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "synth.jsonl").write_text(
        "".join(
            json.dumps({"eval_key": "synth", "eval_instance_index": i, "question": q}) + "\n"
            for i, q in enumerate(questions)
        )
    )
    return ref, questions


def docs(questions: list[str], key: str = "text", n: int = 40) -> bytes:
    """n JSON lines under `key`; lines 3 and 20 hold an eval question."""
    rng = random.Random(1)
    out = []
    for i in range(n):
        text = sentence(rng, 40)
        if i in (3, 20):
            text += " " + questions[i % len(questions)]
        out.append(json.dumps({"id": i, key: text, "url": f"u{i}"}) + "\n")
    return "".join(out).encode()
