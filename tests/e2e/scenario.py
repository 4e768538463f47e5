"""The job the scenarios run: a small planted corpus in the moto S3, a config whose node reaches
S3 at the harness's guest address and pip-installs from the wheelhouse, and ways to watch it."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    ARTIFACTS,
    S3_URL_IN_GUEST,
    WHEELHOUSE_IP,
    WHEELHOUSE_URL_IN_GUEST,
    HarnessError,
    Vm,
)

from decon.config import Config, config_from_dict
from decon_synth.plant import CorpusSpec, make_corpus

BUCKET = "decon-e2e"
JOB_ID = "e2e-job"
INPUT_PREFIX = "input/"
REFERENCE_PREFIX = "reference/"


SLOW_FILE = "part-z/slow-000.jsonl.gz"  # sorts and downloads last: detected after the others
# Clean natural text, repeated: under TCG the guest needs minutes for it, so a spot notice sent
# when it starts lands while it is in progress (the job cancels between chunks).
SLOW_FILE_DOCS = 6000
SLOW_FILE_REPEATS = 10


BIG_FILE = "part-m/big-000.jsonl"  # uncompressed: its cleaned copy is as large as it


def put_job_inputs(
    client: Any,
    workdir: Path,
    files: int = 3,
    slow_file: bool = False,
    slow_repeats: int = SLOW_FILE_REPEATS,
    big_file_mb: int = 0,
) -> list[str]:
    """Plant a corpus, upload its shards and reference to S3; return the input names.

    Question+answer documents (long enough to be flagged, as in tests/jobrun/test_wrapper_e2e.py)
    and clean ones. `slow_file` adds SLOW_FILE, a large clean file that takes minutes in the VM
    (`slow_repeats` times SLOW_FILE_DOCS documents). `big_file_mb` adds BIG_FILE: the corpus's
    documents (planted ones included) repeated to about that size, uncompressed, so that with
    `detect.purify` its cleaned copy is a multipart upload.
    """
    corpus = make_corpus(
        workdir / "corpus",
        CorpusSpec(
            benchmarks=("humaneval", "gsm8k"),
            items_per_benchmark=3,
            held_out_per_benchmark=1,
            docs_per_kind=0,
            kind_counts={"question_answer": 4, "clean_natural": 2},
            files=files,
        ),
    )
    client.create_bucket(Bucket=BUCKET)
    for rel in corpus.files:
        client.upload_file(str(corpus.train_dir / rel), BUCKET, INPUT_PREFIX + rel)
    for path in sorted(corpus.reference_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(corpus.reference_dir).as_posix()
            client.upload_file(str(path), BUCKET, REFERENCE_PREFIX + rel)
    names = list(corpus.files)
    if big_file_mb:
        path = make_big_file(corpus.train_dir, list(corpus.files), workdir / "big", big_file_mb)
        client.upload_file(str(path), BUCKET, INPUT_PREFIX + BIG_FILE)
        names.append(BIG_FILE)
    if slow_file:
        path = make_slow_file(workdir / "slow", slow_repeats)
        client.upload_file(str(path), BUCKET, INPUT_PREFIX + SLOW_FILE)
        names.append(SLOW_FILE)
    return names


def make_big_file(train_dir: Path, files: list[str], workdir: Path, mb: int) -> Path:
    """The corpus's documents (planted ones included) once, then clean natural documents to
    about `mb` MB, as plain JSONL: its cleaned copy is nearly as large as it."""
    planted = b"".join(gzip.decompress((train_dir / rel).read_bytes()) for rel in files)
    doc_chars = 4000
    filler = make_corpus(
        workdir / "filler",
        CorpusSpec(
            benchmarks=("humaneval", "gsm8k"),
            items_per_benchmark=1,
            held_out_per_benchmark=0,
            docs_per_kind=0,
            kind_counts={"clean_natural": (mb << 20) // doc_chars},
            files=1,
            doc_chars=doc_chars,
        ),
    )
    path = workdir / "big.jsonl"
    path.write_bytes(planted + gzip.decompress((filler.train_dir / filler.files[0]).read_bytes()))
    return path


def make_slow_file(workdir: Path, repeats: int = SLOW_FILE_REPEATS) -> Path:
    """A large gzip JSONL of clean natural documents (SLOW_FILE_DOCS x `repeats` lines)."""
    corpus = make_corpus(
        workdir,
        CorpusSpec(
            benchmarks=("humaneval", "gsm8k"),
            items_per_benchmark=1,
            held_out_per_benchmark=0,
            docs_per_kind=0,
            kind_counts={"clean_natural": SLOW_FILE_DOCS},
            files=1,
            doc_chars=4000,
        ),
    )
    with gzip.open(corpus.train_dir / corpus.files[0], "rb") as src:
        lines = src.read()
    path = workdir / "slow.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(repeats):
            out.write(lines)
    return path


def job_config(
    detect: dict[str, Any] | None = None, run: dict[str, Any] | None = None, **node: Any
) -> Config:
    """The job as an operator would write it for EC2, pointed at the harness's services;
    `detect`, `run` and `node` are extra keys for those config sections."""
    data: dict[str, Any] = {
        "job": {"id": JOB_ID},
        "input": {"uri": f"s3://{BUCKET}/{INPUT_PREFIX}"},
        "output": {"uri": f"s3://{BUCKET}/out"},
        "reference": {"uri": f"s3://{BUCKET}/{REFERENCE_PREFIX}"},
        "aws": {"region": "us-east-1", "endpoint_url": S3_URL_IN_GUEST},
        "install": {
            "pip_spec": "decon-agent",
            "find_links": WHEELHOUSE_URL_IN_GUEST,
            "extra_pip_args": ["--no-index", "--no-compile", "--trusted-host", WHEELHOUSE_IP],
        },
    }
    if node:
        data["node"] = node
    if detect:
        data["detect"] = detect
    if run:
        data["run"] = run
    return config_from_dict(data)


def keys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def only_success(client: Any) -> tuple[str, dict[str, Any]]:
    """(run id, body) of the job's one `_SUCCESS` sentinel."""
    found = [k for k in keys(client, BUCKET, f"out/{JOB_ID}/runs/") if k.endswith("/_SUCCESS")]
    assert len(found) == 1, found
    body = json.loads(client.get_object(Bucket=BUCKET, Key=found[0])["Body"].read())
    return found[0].split("/")[-2], body


def assert_reports_for_all(client: Any, inputs: list[str]) -> None:
    """Every input has exactly one report or `.clean` marker under reports/."""
    prefix = f"out/{JOB_ID}/reports/"
    outputs = keys(client, BUCKET, prefix)
    bases = [
        k.removeprefix(prefix).removesuffix(".report.jsonl").removesuffix(".clean") for k in outputs
    ]
    assert sorted(bases) == sorted(input_stem(name) for name in inputs), sorted(outputs)


def input_stem(name: str) -> str:
    """`part-a/shard-001.jsonl.gz` -> `part-a/shard-001` (how reports are named)."""
    for suffix in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".jsonl").removesuffix(".json")


@dataclass
class Observed:
    """What ssh showed of the decon unit while it ran (statuses in order, last journal)."""

    statuses: list[str] = field(default_factory=list)
    journal: str = ""


def watch_decon_until_poweroff(vm: Vm, timeout: float = 900, poll: float = 5) -> Observed:
    """Poll `systemctl status decon` and its journal over ssh until the guest powers off."""
    seen = Observed()
    deadline = time.monotonic() + timeout
    while vm.running() and time.monotonic() < deadline:
        try:
            status = vm.ssh(
                "systemctl status --no-pager --full decon", check=False, timeout=30, attempts=1
            )
            journal = vm.ssh(
                "journalctl --no-pager -o cat -u decon", check=False, timeout=30, attempts=1
            )
        except subprocess.TimeoutExpired:
            continue
        fresh = not seen.statuses or seen.statuses[-1] != status.stdout
        if status.returncode != 255 and "decon.service" in status.stdout and fresh:
            seen.statuses.append(status.stdout)
        if journal.returncode == 0 and journal.stdout.strip():
            seen.journal = journal.stdout
        time.sleep(poll)
    if vm.running():
        raise HarnessError(f"guest still up after {timeout:.0f}s\n{vm.console_tail()}")
    vm.wait_for_poweroff(timeout=30)
    return seen


def record_observation(name: str, seconds: float, seen: Observed) -> Path:
    """Save the statuses and journal the guest printed to build/e2e/<name>.observed.txt."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.observed.txt"
    parts = [f"scenario {name}: {seconds} s boot to poweroff"]
    for i, status in enumerate(seen.statuses):
        parts.append(f"--- systemctl status decon #{i} ---\n{status}")
    parts.append(f"--- journalctl -u decon ---\n{seen.journal}")
    path.write_text("\n".join(parts) + "\n")
    return path


# --- IAM (scenario 3): the node's role as EC2 would hand it out through IMDS ----------------------

NODE_ROLE = "decon-e2e-node"
NODE_POLICY = "decon-e2e-node-s3"
ADMIN_USER = "decon-e2e-admin"
EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def node_policy(runs_writable: bool) -> dict[str, Any]:
    """The node role's S3 policy (the README's: reports, cleaned copies, the shared reference
    index, runs). Without `runs_writable` the run's artifacts (journal, log, manifest,
    `_SUCCESS`) are denied; only the heartbeat and `_FAILED_UPLOAD` may be written."""
    bucket = f"arn:aws:s3:::{BUCKET}"
    out = f"{bucket}/out/{JOB_ID}"
    writable = [f"{out}/reports/*", f"{out}/cleaned/*", f"{out}/index/*"]  # the job's outputs
    if runs_writable:
        writable.append(f"{out}/runs/*")
    else:
        writable += [f"{out}/runs/*/heartbeat.json", f"{out}/runs/*/_FAILED_UPLOAD"]
    write_actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket}/*"},
            {"Effect": "Allow", "Action": write_actions, "Resource": writable},
        ],
    }


@dataclass
class IamWorld:
    """The node role's session credentials (for IMDS) and an admin client for the host."""

    node_credentials: dict[str, str]
    admin: dict[str, str]


def make_node_role(s3: Any, runs_writable: bool) -> IamWorld:
    """Create the node role (EC2 trust, `node_policy`) and an admin user; assume the role.

    Call before `s3.enforce_iam()`. The role's session credentials (ASIA..., with a session
    token) are what IMDS serves at iam/security-credentials/<role>, as on EC2."""
    iam = s3.client("iam")
    iam.create_role(RoleName=NODE_ROLE, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    set_node_policy(iam, runs_writable)
    iam.create_user(UserName=ADMIN_USER)
    allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    admin_policy = {"Version": "2012-10-17", "Statement": [allow_all]}
    iam.put_user_policy(
        UserName=ADMIN_USER, PolicyName="admin", PolicyDocument=json.dumps(admin_policy)
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    role_arn = iam.get_role(RoleName=NODE_ROLE)["Role"]["Arn"]
    session = s3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="decon-e2e-node")
    creds = session["Credentials"]
    return IamWorld(
        node_credentials={
            "access_key_id": creds["AccessKeyId"],
            "secret_access_key": creds["SecretAccessKey"],
            "session_token": creds["SessionToken"],
        },
        admin={
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        },
    )


def set_node_policy(iam: Any, runs_writable: bool) -> None:
    iam.put_role_policy(
        RoleName=NODE_ROLE,
        PolicyName=NODE_POLICY,
        PolicyDocument=json.dumps(node_policy(runs_writable)),
    )


def guest_file_text(vm: Vm, path: str) -> str:
    """A guest file's text over ssh ('' when it cannot be read)."""
    try:
        result = vm.ssh(f"cat {path}", check=False, timeout=30, attempts=1)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout if result.returncode == 0 else ""


def wait_for_guest_text(vm: Vm, path: str, needle: str, timeout: float, poll: float = 3) -> str:
    """Poll a guest file over ssh until it contains `needle`; return its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not vm.running():
            break
        text = guest_file_text(vm, path)
        if needle in text:
            vm.timings.mark(f"text:{needle}")
            return text
        time.sleep(poll)
    raise HarnessError(f"{needle!r} not in guest {path} within {timeout:.0f}s\n{vm.console_tail()}")


def event_lines(log: str, state: str) -> list[str]:
    """The `STATE: <state> ...` lines of a decon log, in order."""
    return [line for line in log.splitlines() if f"STATE: {state} " in line + " "]
