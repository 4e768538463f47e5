"""Progress reporting: systemd STATUS lines, progress.json, the heartbeat object, host index."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import make_config
from decon.errors import UserError
from decon.jobrun.heartbeat import HeartbeatRecord
from decon.jobrun.job import EXIT_DONE
from decon.jobrun.progress import FailedFile, Progress
from decon.node.notify import Notifier
from decon.node.state import NodeState
from fakes.jobrun_world import OUT_BUCKET, job_sections, put_shards, run_inline


def test_status_line_format() -> None:
    p = Progress(assigned=40, done=12, contaminated=3)
    p.bytes_done = 450 << 20
    p.started -= 10
    assert p.status_line().startswith("12/40 files, 3 contaminated, 4")
    assert p.status_line().endswith(" MB/s")
    p.file_failed(FailedFile("a.jsonl", "s3://b/a.jsonl", "download", "boom"))
    assert ", 1 failed, " in p.status_line()
    data = p.to_progress_json()
    assert {k: data[k] for k in ("assigned", "done", "contaminated", "failed")} == {
        "assigned": 40,
        "done": 12,
        "contaminated": 3,
        "failed": 1,
    }
    assert data["failed_files"] == [
        {"rel": "a.jsonl", "location": "s3://b/a.jsonl", "stage": "download", "error": "boom"}
    ]


def test_status_goes_to_the_notify_socket(s3, node_root: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    put_shards(s3.client(), 5)
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.1)
    try:
        cfg = make_config(node_root, **job_sections(node_root))
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert run_inline(cfg, notifier=Notifier()) == EXIT_DONE
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        sock.close()
    statuses = [m.removeprefix("STATUS=") for m in messages if m.startswith("STATUS=")]
    assert statuses[0].startswith("0/5 files, 0 contaminated")
    assert statuses[-1].startswith("5/5 files, 2 contaminated, ") and statuses[-1].endswith("MB/s")


def test_heartbeat_is_refreshed_while_running(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    put_shards(client, 4)
    seen: list[HeartbeatRecord] = []

    class Spy(Notifier):
        def status(self, text: str) -> bool:
            run_id = NodeState(cfg.node.state_dir).run_id()
            key = f"out/test-job/runs/{run_id}/heartbeat.json"
            try:
                body = client.get_object(Bucket=OUT_BUCKET, Key=key)["Body"].read()
                seen.append(HeartbeatRecord.from_json(body))
            except client.exceptions.NoSuchKey:
                pass
            return True

    cfg = make_config(node_root, **job_sections(node_root))
    assert run_inline(cfg, notifier=Spy("")) == EXIT_DONE
    assert seen and seen[0].state == "running" and seen[0].files.assigned == 4
    run_id = NodeState(cfg.node.state_dir).run_id()
    final = HeartbeatRecord.from_json(
        client.get_object(Bucket=OUT_BUCKET, Key=f"out/test-job/runs/{run_id}/heartbeat.json")[
            "Body"
        ].read()
    )
    assert final.state == "done" and final.files.done == 4 and final.run_id == run_id
    assert final.host_count == 1 and final.job_id == "test-job"


def test_host_index_from_imds_launch_index(s3, node_root: Path) -> None:  # type: ignore[no-untyped-def]
    put_shards(s3.client(), 6)
    sections = job_sections(
        node_root, job={"id": "test-job", "host_count": 3}, run={"host_index_from_imds": True}
    )
    cfg = make_config(node_root, **sections)
    assert run_inline(cfg, imds_launch_index=lambda: 2) == EXIT_DONE
    log = Path(cfg.node.log_file).read_text()
    assert "host_index=2 host_count=3" in log
    with pytest.raises(UserError, match="ami-launch-index 7 is not in 0..2"):
        run_inline(cfg, imds_launch_index=lambda: 7)
    with pytest.raises(UserError, match="no IMDS client"):
        run_inline(cfg)
