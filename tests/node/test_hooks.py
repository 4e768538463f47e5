import io
import os
from pathlib import Path

from decon.eventlog import EventLog
from decon.node.hooks import run_hooks


def hook(root: Path, event: str, name: str, body: str, executable: bool = True) -> Path:
    folder = root / f"{event}.d"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755 if executable else 0o644)
    return path


def test_hooks_run_in_lexical_order_with_facts(tmp_path):
    out = tmp_path / "out.txt"
    hook(tmp_path, "pre-finalize", "20-b", f'echo "b $DECON_RUN_ID $DECON_EVENT" >> {out}\n')
    hook(tmp_path, "pre-finalize", "10-a", f'echo "a $COMPLETION_STATUS" >> {out}\n')
    hook(tmp_path, "pre-finalize", "30-off", f"echo never >> {out}\n", executable=False)
    log = EventLog(None, io.StringIO())
    results = run_hooks(
        tmp_path, "pre-finalize", {"DECON_RUN_ID": "r1", "COMPLETION_STATUS": "normal"}, log
    )
    assert [r.path.name for r in results] == ["10-a", "20-b"]
    assert out.read_text() == "a normal\nb r1 pre-finalize\n"


def test_failing_and_hanging_hooks_are_logged_not_fatal(tmp_path):
    hook(tmp_path, "post-finalize", "1-fail", "echo boom; exit 3\n")
    hook(tmp_path, "post-finalize", "2-hang", "sleep 30\n")
    hook(tmp_path, "post-finalize", "3-ok", "echo fine\n")
    stream = io.StringIO()
    results = run_hooks(tmp_path, "post-finalize", {}, EventLog(None, stream), timeout=0.5)
    assert [r.returncode for r in results] == [3, None, 0]
    text = stream.getvalue()
    assert "hook post-finalize/1-fail: boom" in text
    assert "STATE: HOOK_FAILED event=post-finalize hook=2-hang" in text
    assert "hook post-finalize/3-ok: fine" in text


def test_missing_folder_runs_nothing(tmp_path):
    assert run_hooks(tmp_path, "on-interrupt", {}, EventLog(None, io.StringIO())) == []
    assert not os.path.exists(tmp_path / "on-interrupt.d")
