"""decon-wrapper as a real subprocess: real signals, a real AF_UNIX notify socket, a stub
finalizer that records its argv and environment, a job that records the signals it gets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import make_config
from decon.config import config_to_dict
from decon.node.imds import ImdsError
from decon.node.state import NodeState, Outcome, SpotNotice
from decon.node.wrapper import (
    decide_run,
    finished_status,
    imds_instance_id_lookup,
    progress_text,
)
from fakes.imds import FakeImds

JOB = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path

    record, started, run_seconds, exit_code, linger = sys.argv[1:6]
    got = []

    def on_signal(signum, frame):
        with open(record, "a") as fh:
            fh.write(signal.Signals(signum).name + "\\n")
        got.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    Path(started).write_text(json.dumps({
        "pid": os.getpid(), "pgid": os.getpgid(0),
        "run_id": os.environ.get("DECON_RUN_ID"), "config": os.environ.get("DECON_CONFIG"),
    }))
    if os.environ.get("JOB_PROGRESS_FILE"):
        Path(os.environ["JOB_PROGRESS_FILE"]).write_text(
            json.dumps({"assigned": 10, "done": 4, "contaminated": 1, "failed": 0}))
    if os.environ.get("NOTIFY_SOCKET"):
        import socket as s
        with s.socket(s.AF_UNIX, s.SOCK_DGRAM) as sock:
            sock.sendto(b"STATUS=job says hi", os.environ["NOTIFY_SOCKET"])
    deadline = time.time() + float(run_seconds)
    while time.time() < deadline and not got:
        time.sleep(0.02)
    if got:
        time.sleep(float(linger))  # stay alive so a second signal to the wrapper can arrive
        signal.signal(got[0], signal.SIG_DFL)
        os.kill(os.getpid(), got[0])
    sys.exit(int(exit_code))
    """
)

FINALIZER = textwrap.dedent(
    """
    import json, os, sys
    with open(os.environ["FINALIZER_RECORD"], "a") as fh:
        keep = ("DECON_RUN_ID", "COMPLETION_STATUS", "EXIT_CODE", "DECON_CONFIG", "NOTIFY_SOCKET")
        fh.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(),
                             "env": {k: os.environ.get(k) for k in keep}}) + "\\n")
    sys.exit(int(os.environ.get("FINALIZER_EXIT", "0")))
    """
)

# Runs the real wrapper entry point with the sentinel lookup injected (the S3 side is tested
# with the sentinel module); DRIVER_SENTINEL names a JSON file: null, an object, or "raise".
DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    from types import SimpleNamespace
    from decon.errors import guarded_main
    from decon.node import wrapper

    def lookup(cfg, run_id):
        path = os.environ["DRIVER_SENTINEL"]
        open(path + ".asked", "w").close()
        time.sleep(float(os.environ.get("DRIVER_LOOKUP_SECONDS", "0")))
        data = json.loads(open(path).read()) if os.path.exists(path) else None
        if data == "raise":
            raise ConnectionError("endpoint unreachable")
        return None if data is None else SimpleNamespace(**data)

    sys.exit(guarded_main(
        lambda argv: wrapper._main(argv, sentinel_lookup=lookup, progress_every=0.05),
        sys.argv[1:]))
    """
)


@dataclass
class Node:
    root: Path
    config: Path
    job_record: Path
    job_started: Path
    finalizer_record: Path
    poweroff_record: Path
    sentinel: Path
    driver: Path

    @property
    def state(self) -> NodeState:
        return NodeState(self.root / "var/lib/decon")

    def log(self) -> str:
        path = self.root / "var/log/decon-run.log"
        return path.read_text() if path.exists() else ""

    def finalizer_calls(self) -> list[dict]:
        if not self.finalizer_record.exists():
            return []
        return [json.loads(line) for line in self.finalizer_record.read_text().splitlines()]

    def job_signals(self) -> list[str]:
        return self.job_record.read_text().split() if self.job_record.exists() else []


def make_node(
    root: Path,
    run_seconds: float = 0.0,
    exit_code: int = 0,
    linger: float = 0.0,
    job_command: list[str] | None = None,
    instance_id: str | None = "i-0123456789abcdef0",
    spot: dict | None = None,
) -> Node:
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    job = root / "bin/job.py"
    job.write_text(JOB)
    finalizer = root / "bin/finalize.py"
    finalizer.write_text(FINALIZER)
    poweroff = root / "bin/poweroff"
    poweroff.write_text(f"#!/bin/sh\necho poweroff >> {root}/poweroff.calls\n")
    poweroff.chmod(0o755)
    driver = root / "bin/driver.py"
    driver.write_text(DRIVER)
    node = Node(
        root=root,
        config=root / "etc/decon/config.yaml",
        job_record=root / "job.signals",
        job_started=root / "job.started",
        finalizer_record=root / "finalizer.calls",
        poweroff_record=root / "poweroff.calls",
        sentinel=root / "sentinel.json",
        driver=driver,
    )
    command = job_command or [
        sys.executable,
        str(job),
        str(node.job_record),
        str(node.job_started),
        str(run_seconds),
        str(exit_code),
        str(linger),
    ]
    cfg = make_config(
        root,
        node={
            "job_command": command,
            "finalize_command": [sys.executable, str(finalizer)],
            "poweroff_command": [str(poweroff)],
            "instance_id": instance_id,
        },
        **({"spot": spot} if spot else {}),
    )
    node.config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return node


def start_wrapper(node: Node, notify: str | None = None, **env: str) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    full_env.update(FINALIZER_RECORD=str(node.finalizer_record), DRIVER_SENTINEL=str(node.sentinel))
    if notify is not None:
        full_env["NOTIFY_SOCKET"] = notify
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, str(node.driver), "--config", str(node.config)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a service
    )


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(0.05)
        yield path, server


def drain(server: socket.socket, until: subprocess.Popen[bytes] | None = None) -> list[str]:
    """Datagrams received until `until` exits (or until the socket is quiet)."""
    got = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            got.append(server.recv(4096).decode())
            continue
        except TimeoutError:
            pass
        if until is None or until.poll() is not None:
            break
    return got


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def recv_until(server: socket.socket, needle: str, timeout: float = 10.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(needle in d for d in got):
        if time.monotonic() > deadline:
            raise AssertionError(f"no datagram with {needle!r}; got {got}")
        with contextlib.suppress(TimeoutError):
            got.append(server.recv(4096).decode())
    return got


def test_sigterm_forwarded_exactly_once_and_outcome_finalized(tmp_path, notify_socket):
    path, server = notify_socket
    node = make_node(tmp_path, run_seconds=30, linger=0.6)
    proc = start_wrapper(node, notify=path)
    early = recv_until(server, "READY=1")  # sent once the job's exec succeeded
    wait_for(node.job_started.exists)
    started = json.loads(node.job_started.read_text())
    assert f"running job (pid {started['pid']})" in early[-1]
    assert started["pgid"] == started["pid"] != os.getpgid(proc.pid)  # job has its own group

    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: node.job_signals())
    os.killpg(proc.pid, signal.SIGINT)  # a second signal, to the wrapper's whole group
    out, err = proc.communicate(timeout=20)
    rest = drain(server)

    assert proc.returncode == 0, err.decode()
    assert node.job_signals() == ["SIGTERM"]  # once, and the group SIGINT never reached it
    log = node.log()
    assert log.count("SIGNAL_FORWARDED") == 1
    assert f"SIGNAL_FORWARDED signal=SIGTERM pid={started['pid']}" in log
    assert "SIGNAL_NOT_FORWARDED signal=SIGINT" in log
    assert "JOB_EXIT" in log and "exit_code=-15" in log
    assert "JOB_EXIT" in out.decode()  # the journal gets the same lines

    (call,) = node.finalizer_calls()
    argv = call["argv"]
    assert argv[argv.index("--config") + 1] == str(node.config)
    assert argv[argv.index("--status") + 1] == "interrupted"
    assert argv[argv.index("--exit-code") + 1] == "-15"
    reason = argv[argv.index("--reason") + 1]
    assert "signal 15" in reason and "SIGTERM was forwarded" in reason
    run_id = node.state.run_id()
    assert call["env"]["DECON_RUN_ID"] == run_id == started["run_id"]
    assert call["env"]["COMPLETION_STATUS"] == "interrupted"
    assert call["env"]["EXIT_CODE"] == "-15"
    assert started["config"] == str(node.config)
    assert run_id.endswith("-i-0123456789abcdef0")

    outcome = node.state.outcome()
    assert (outcome.completion_status, outcome.exit_code) == ("interrupted", -15)
    stopping = [d for d in rest if "STOPPING=1" in d]
    assert len(stopping) == 1 and "SIGTERM forwarded" in stopping[0]
    assert any("finalizing run_id=" in d for d in rest)
    assert not node.state.wrapper_pid_file.exists()


def test_normal_exit_notify_sequence_progress_and_job_status(tmp_path, notify_socket):
    path, server = notify_socket
    node = make_node(tmp_path, run_seconds=0.5)
    progress = node.state.dir / "progress.json"
    proc = start_wrapper(node, notify=path, JOB_PROGRESS_FILE=str(progress), FINALIZER_EXIT="1")
    got = drain(server, until=proc)
    proc.communicate(timeout=10)

    assert proc.returncode == 0  # a failing finalizer never makes systemd rerun the job
    ready = [i for i, d in enumerate(got) if d.startswith("READY=1")]
    assert len(ready) == 1
    assert "STATUS=job says hi" in got  # the job's own STATUS through the inherited socket
    assert any("files 4/10 done, 1 contaminated, 0 failed" in d for d in got)
    # No STOPPING=1 when nobody asked the service to stop: it would start systemd's stop timer
    # under the finalizer.
    assert not any("STOPPING=1" in d for d in got)
    final = [i for i, d in enumerate(got) if "STATUS=finalizing run_id=" in d]
    assert len(final) == 1 and final[0] > ready[0]
    (call,) = node.finalizer_calls()
    argv = call["argv"]
    assert argv[argv.index("--status") + 1] == "normal"
    assert argv[argv.index("--exit-code") + 1] == "0"
    assert argv[argv.index("--reason") + 1] == "job exited 0"
    assert call["env"]["NOTIFY_SOCKET"] == path
    assert "FINALIZER_EXIT run_id=" in node.log() and "exit_code=1" in node.log()
    # The last STATUS= is what `systemctl status` keeps showing after the unit ends.
    statuses = [d for d in got if "STATUS=" in d]
    assert statuses[-1].startswith("STATUS=finished run_id="), statuses
    assert "job normal (exit 0), finalizer exited 1" in statuses[-1]
    assert got.index(statuses[-1]) > final[0]


def test_finished_status_says_how_job_and_finalizer_ended():
    ok = finished_status("r1", Outcome.from_exit(0), 0)
    assert ok == "finished run_id=r1: job normal (exit 0), finalized"
    failed = finished_status("r1", Outcome.from_exit(143), 1)
    assert failed.startswith("finished run_id=r1: job interrupted (exit 143), finalizer exited 1")
    assert "decon-finalize" in failed


def test_exit_code_captured_without_notify_socket(tmp_path):
    node = make_node(tmp_path, exit_code=3)
    proc = start_wrapper(node)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    (call,) = node.finalizer_calls()
    assert call["argv"][call["argv"].index("--exit-code") + 1] == "3"
    assert call["argv"][call["argv"].index("--status") + 1] == "interrupted"
    assert call["env"]["NOTIFY_SOCKET"] is None
    assert node.state.outcome().reason == "job exited 3"


def test_watchdog_pings_at_half_the_interval(tmp_path, notify_socket):
    path, server = notify_socket
    node = make_node(tmp_path, run_seconds=1.0)
    proc = start_wrapper(node, notify=path, WATCHDOG_USEC="200000")
    got = drain(server, until=proc)
    proc.communicate(timeout=10)
    assert 4 <= got.count("WATCHDOG=1") <= 30  # ~every 0.1 s for ~1 s


def test_missing_job_binary_is_an_outcome_and_still_finalizes(tmp_path):
    node = make_node(tmp_path, job_command=[str(tmp_path / "no/such/job")])
    proc = start_wrapper(node)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    (call,) = node.finalizer_calls()
    argv = call["argv"]
    assert argv[argv.index("--exit-code") + 1] == "127"
    assert argv[argv.index("--status") + 1] == "interrupted"
    assert "cannot start" in argv[argv.index("--reason") + 1]
    assert "JOB_START_FAILED" in node.log()


def test_missing_finalizer_exits_3_so_the_unit_does_not_restart(tmp_path):
    node = make_node(tmp_path)
    data = yaml.safe_load(node.config.read_text())
    data["node"]["finalize_command"] = [str(tmp_path / "no/finalizer")]
    node.config.write_text(yaml.safe_dump(data))
    proc = start_wrapper(node)
    proc.communicate(timeout=20)
    assert proc.returncode == 3
    assert "FINALIZER_NOT_STARTED" in node.log()


def test_finished_run_is_not_rerun_and_the_node_powers_off(tmp_path):
    node = make_node(tmp_path)
    old = node.state.start_run("i-old")
    node.sentinel.write_text(json.dumps({"status": "success", "completion_status": "normal"}))
    proc = start_wrapper(node)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert not node.job_started.exists()
    assert node.finalizer_calls() == []
    assert node.poweroff_record.read_text() == "poweroff\n"
    assert node.state.run_id() == old
    assert "JOB_ALREADY_DONE" in node.log() and "TERMINATING" in node.log()


def test_interrupted_run_starts_a_new_run(tmp_path):
    node = make_node(tmp_path)
    old = node.state.start_run("i-old", when=__import__("datetime").datetime(2020, 1, 1))
    node.sentinel.write_text(json.dumps({"status": "success", "completion_status": "interrupted"}))
    proc = start_wrapper(node)
    proc.communicate(timeout=20)
    new = node.state.run_id()
    assert new != old and new.endswith("-i-0123456789abcdef0")
    assert json.loads(node.job_started.read_text())["run_id"] == new
    assert len(node.finalizer_calls()) == 1


@pytest.mark.parametrize(
    "sentinel", [None, {"status": "failed_upload", "completion_status": "normal"}, "raise"]
)
def test_unfinished_run_resumes_with_the_same_run_id(tmp_path, sentinel):
    node = make_node(tmp_path)
    old = node.state.start_run("i-old")
    stale = SpotNotice("stop", "2020-01-01T00:00:00Z")
    node.state.write_notice(stale)
    node.sentinel.write_text(json.dumps(sentinel))
    proc = start_wrapper(node)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert node.state.run_id() == old
    assert json.loads(node.job_started.read_text())["run_id"] == old
    assert node.state.notice() is None  # a notice from an earlier boot is not a deadline
    assert ("SENTINEL_CHECK_FAILED" in node.log()) == (sentinel == "raise")


def test_new_run_id_ends_with_the_imds_instance_id(tmp_path):
    imds = FakeImds(instance_id="i-0feedc0ffee123456")
    imds.start()
    try:
        node = make_node(tmp_path, instance_id=None, spot={"imds_endpoint": imds.url})
        proc = start_wrapper(node)
        _, err = proc.communicate(timeout=20)
    finally:
        imds.stop()
    assert proc.returncode == 0, err.decode()
    assert node.state.run_id().endswith("-i-0feedc0ffee123456")
    assert json.loads(node.job_started.read_text())["run_id"] == node.state.run_id()
    asked = [(r.method, r.path) for r in imds.requests]
    assert asked == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/instance-id")]


def test_unreachable_imds_falls_back_to_the_host_name_quickly(tmp_path):
    imds = FakeImds()
    imds.start()
    imds.stop()  # connection refused from now on
    node = make_node(tmp_path, instance_id=None, spot={"imds_endpoint": imds.url})
    proc = start_wrapper(node)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    host = socket.gethostname().split(".")[0] or "localhost"
    assert node.state.run_id().endswith(f"-{host}")


def test_imds_lookup_gives_up_after_one_short_attempt(tmp_path):
    imds = FakeImds()
    imds.start()
    try:
        imds.delay_next(5, 2.0)  # IMDS hangs longer than the timeout
        cfg = make_config(tmp_path, spot={"imds_endpoint": imds.url})
        started = time.monotonic()
        with pytest.raises(ImdsError):
            imds_instance_id_lookup(cfg, timeout=0.3)()
        assert time.monotonic() - started < 3.0
        assert len(imds.requests) <= 1  # no retries
    finally:
        imds.stop()


def test_stop_before_the_job_starts_runs_no_job_and_finalizes(tmp_path, notify_socket):
    path, server = notify_socket
    node = make_node(tmp_path)
    node.state.start_run("i-old")
    proc = start_wrapper(node, notify=path, DRIVER_LOOKUP_SECONDS="1.5")
    asked = Path(f"{node.sentinel}.asked")
    wait_for(asked.exists)  # the wrapper is inside the (slow) sentinel lookup
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    got = drain(server)
    assert proc.returncode == 0, err.decode()
    assert not node.job_started.exists()
    (call,) = node.finalizer_calls()
    argv = call["argv"]
    assert argv[argv.index("--exit-code") + 1] == "-15"
    assert "before the job started" in argv[argv.index("--reason") + 1]
    assert sum("STOPPING=1" in d for d in got) == 1


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("node: {bogus: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "decon.node.wrapper", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "node.bogus" in proc.stderr


# -- pure parts --------------------------------------------------------------------------------


@dataclass
class S:
    status: str
    completion_status: str | None


@pytest.mark.parametrize(
    ("run_id", "sentinel", "action"),
    [
        (None, None, "new"),
        ("run-x", None, "resume"),
        ("run-x", S("failed_upload", "normal"), "resume"),
        ("run-x", S("success", "normal"), "done"),
        ("run-x", S("success", "interrupted"), "new"),
    ],
)
def test_decide_run(run_id, sentinel, action):
    assert decide_run(run_id, sentinel).action == action


def test_progress_text():
    assert progress_text({}) == ""
    assert progress_text({"assigned": 5, "done": 2}) == "files 2/5 done"
