"""`decon run`'s built-in detector: the toxic mode's word vectors from an s3:// URI (moto server
over real boto3), fetched once into the work directory before the detector is built."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_config
from decon.errors import UserError
from decon.jobrun.detect_step import builtin_detector, vectors_dir

QUESTION = "Which famous physicist developed the general theory of relativity in nineteen fifteen"


def world(tmp_path: Path) -> tuple[Path, Path, bytes]:
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "quiz.jsonl").write_text(json.dumps({"eval_key": "quiz", "question": QUESTION}) + "\n")
    src = tmp_path / "in.jsonl"
    lines = [{"text": "Plain text about gardens and weather."}, {"text": "Quiz: " + QUESTION}]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    words = sorted(set(QUESTION.lower().split()) | {"plain", "text", "gardens", "weather", "quiz"})
    vec = f"{len(words)} 4\n" + "".join(
        f"{w} {i % 3 - 1}.5 {i % 5 - 2}.25 {i % 7 - 3}.0 {i % 2}.75\n" for i, w in enumerate(words)
    )
    return ref, src, vec.encode()


def config(tmp_path: Path, s3, uri: str):
    detect = {"mode": "toxic", "toxic_vectors": uri, "eval_min_token_length": 0, "workers": 1}
    return make_config(
        tmp_path,
        detect=detect,
        aws={"endpoint_url": s3.endpoint},
        run={"work_dir": str(tmp_path / "work")},
    )


def test_toxic_vectors_are_fetched_from_s3_once(tmp_path: Path, s3):
    ref, src, vec = world(tmp_path)
    client = s3.client()
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="vectors/words.vec", Body=vec)
    cfg = config(tmp_path, s3, "s3://models/vectors/words.vec")
    detect = builtin_detector(cfg, ref)
    local = vectors_dir(cfg) / "words.vec"
    assert local == tmp_path / "work" / "vectors" / "words.vec" and local.read_bytes() == vec
    report = tmp_path / "out" / "in.report.jsonl"
    result = detect(src, "in.jsonl", report, None)
    assert result.matches == 1 and result.contaminated_lines == 1
    (line,) = [json.loads(x) for x in report.read_text().splitlines()]
    assert line["method"] == "toxic" and line["training_line"] == 1
    # A second build (a restarted job) reuses the file of the same size: no download.
    os.utime(local, (1000, 1000))
    builtin_detector(cfg, ref)
    assert local.stat().st_mtime == 1000
    local.write_bytes(b"short\n")  # a partial file of another size is fetched again
    builtin_detector(cfg, ref)
    assert local.read_bytes() == vec
    with pytest.raises(UserError, match=r"detect.toxic_vectors: s3://models/vectors/other.vec"):
        builtin_detector(config(tmp_path, s3, "s3://models/vectors/other.vec"), ref)
