"""End to end on one machine: the real `decon-wrapper` runs the real `decon run`, then the real
`decon-finalize` writes the run's sentinel to the moto server; poweroff is a stub."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO, make_config
from decon.config import config_to_dict
from decon_synth.evaluate import evaluate_dirs, kind_table
from decon_synth.plant import CorpusSpec, make_corpus
from fakes.jobrun_world import IN_BUCKET, IN_PREFIX, OUT_BUCKET, job_sections, keys, put_shards

TESTS = REPO / "tests"
MARKER_DETECTOR = "fakes.marker_detector:marker_factory"


def write_node(root: Path, job_extra: list[str], **sections: dict) -> tuple[Path, Path]:
    """A config whose node runs the real wrapper/job/finalizer; returns (config, poweroff log)."""
    calls = root / "poweroff.calls"
    stub = root / "poweroff-stub"
    stub.write_text(f'#!/bin/sh\necho "poweroff $*" >> {calls}\n')
    stub.chmod(0o755)
    py = sys.executable
    cfg = make_config(
        root,
        node={
            "instance_id": "i-0123456789abcdef0",
            "job_command": [py, "-m", "decon.cli", "run", *job_extra],
            "finalize_command": [py, "-m", "decon.node.finalizer"],
            "poweroff_command": [str(stub)],
        },
        **sections,
    )
    config = root / "etc/decon/config.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return config, calls


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Like `proc.communicate`, but a hang fails with every thread's stack of the job and its
    detection workers (`decon run` dumps them to stderr on SIGUSR1)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"wrapper still running after {timeout}s\n{out}\n{err}") from None


def start_wrapper(config: Path, **env: str) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    full_env.update(PYTHONPATH=str(TESTS), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "decon.node.wrapper", "--config", str(config)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def sentinels(client) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    found = keys(client, OUT_BUCKET)
    return {
        k: json.loads(client.get_object(Bucket=OUT_BUCKET, Key=k)["Body"].read())
        for k in found
        if k.endswith("/_SUCCESS")
    }


def test_normal_completion_writes_success_normal_and_powers_off_once(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    # Question+answer documents of long items (HumanEval, GSM8K): Decon's simple mode skips
    # items under 20 tokens and needs a perfect match below 50, so short items or
    # question-only documents would not reliably be reported.
    corpus = make_corpus(
        node_root / "corpus",
        CorpusSpec(
            benchmarks=("humaneval", "gsm8k"),
            items_per_benchmark=3,
            held_out_per_benchmark=1,
            docs_per_kind=0,
            kind_counts={"question_answer": 4, "clean_natural": 2},
            files=3,
        ),
    )
    for bucket in (IN_BUCKET, OUT_BUCKET):
        client.create_bucket(Bucket=bucket)
    for rel in corpus.files:
        client.upload_file(str(corpus.train_dir / rel), IN_BUCKET, IN_PREFIX + rel)
    sections = job_sections(node_root, reference={"uri": str(corpus.reference_dir)})
    config, calls = write_node(node_root, [], **sections)

    proc = start_wrapper(config)
    out, err = communicate(proc, 120)

    assert proc.returncode == 0, err
    [(key, body)] = sentinels(client).items()
    assert body["completion_status"] == "normal", body
    assert calls.read_text().splitlines() == ["poweroff "]
    outputs = keys(client, OUT_BUCKET, "out/test-job/reports/")
    # every input has exactly one report (contaminated) or .clean marker
    bases = {k.removesuffix(".report.jsonl").removesuffix(".clean") for k in outputs}
    assert len(outputs) == len(bases) == len(corpus.files), sorted(outputs)
    reports = [k for k in outputs if k.endswith(".report.jsonl")]
    assert reports, sorted(outputs)
    local = node_root / "reports"
    for key in reports:
        dest = local / key.removeprefix("out/test-job/reports/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(OUT_BUCKET, key, str(dest))
    result = evaluate_dirs(corpus.truth_path, local)
    planted = result.cell("question_answer")
    assert planted.docs == 4 and planted.right_item == planted.docs, kind_table(result)
    assert result.false_positives() == 0, kind_table(result)


def test_sigterm_to_wrapper_gives_interrupted_and_keeps_finished_outputs(
    s3, node_root: Path
) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    truth = put_shards(client, 8, lines=40)
    sections = job_sections(node_root)
    config, calls = write_node(node_root, ["--detector", MARKER_DETECTOR], **sections)
    log = node_root / "var/log/decon-run.log"

    proc = start_wrapper(config, FAKE_DETECT_SLEEP="0.02")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "FILE_DONE" in text and text.count("FILE_START ") > text.count("FILE_DONE "):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("job never got to a second file")
    proc.send_signal(signal.SIGTERM)
    out, err = communicate(proc, 60)

    [(key, body)] = sentinels(client).items()
    assert body["completion_status"] == "interrupted", body
    assert calls.read_text().splitlines() == ["poweroff "]
    text = log.read_text()
    done = [x.split("file=", 1)[1].split(" ", 1)[0] for x in text.splitlines() if "FILE_DONE" in x]
    assert done and len(done) < len(truth)
    reports = keys(client, OUT_BUCKET, "out/test-job/reports/")
    cleaned = keys(client, OUT_BUCKET, "out/test-job/cleaned/")
    for rel in done:
        base = rel.split(".json")[0]
        expect = f"out/test-job/reports/{base}" + (".report.jsonl" if truth[rel] else ".clean")
        assert expect in reports, (rel, sorted(reports))
    # nothing beyond the finished files: no partial object of the abandoned file
    finished_bases = {rel.split(".json")[0] for rel in done}
    for key in [*reports, *cleaned]:
        rel = key.split("/", 3)[3]
        assert rel.split(".clean")[0].split(".report")[0] in finished_bases, key
