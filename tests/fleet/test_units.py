"""The systemd units, checked by the real `systemd-analyze verify` (its stderr must be empty:
it exits 0 on unknown keys). ExecStart binaries are stubs under a temp dir."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from decon.fleet.userdata import UNIT_NAMES, data_text

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed (apt-get install systemd; .ci/run does)",
)


def verify(tmp_path: Path, units: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on `units` with /opt/decon/bin/* replaced by stub scripts."""
    bin_dir = tmp_path / "opt/decon/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("decon-wrapper", "decon-spot-watch"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text.replace("/opt/decon/bin/", f"{bin_dir}/"))
    return subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_dir / n) for n in units)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def shipped_units() -> dict[str, str]:
    return {name: data_text(f"units/{name}") for name in UNIT_NAMES}


@needs_systemd
def test_units_verify_with_empty_stderr(tmp_path):
    result = verify(tmp_path, shipped_units())
    assert result.stderr == ""
    assert result.returncode == 0


@needs_systemd
def test_verify_catches_an_unknown_key_and_a_missing_binary(tmp_path):
    units = shipped_units()
    units["decon.service"] = units["decon.service"].replace(
        "[Service]\n", "[Service]\nRestartPolicy=never\n"
    )
    result = verify(tmp_path, units)
    assert "Unknown key" in result.stderr and "RestartPolicy" in result.stderr
    missing = subprocess.run(
        ["systemd-analyze", "verify", str(REPO / "units/decon.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    if not Path("/opt/decon/bin/decon-wrapper").exists():
        assert missing.returncode != 0 and "decon-wrapper" in missing.stderr


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(data_text(f"units/{name}"))
    return parser["Service"]


def test_decon_service_design():
    svc = service("decon.service")
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "all"
    assert svc["ExecStart"] == "/opt/decon/bin/decon-wrapper --config /etc/decon/config.yaml"
    assert svc["KillMode"] == "mixed"  # SIGTERM to the wrapper only; it forwards once
    assert int(svc["TimeoutStopSec"].rstrip("s")) >= 180  # 63 s of backoff waits + uploads
    # The wrapper exits 0 after finalizing; 2 and 3 are never restarted.
    assert svc["Restart"] == "on-failure"
    assert set(svc["RestartPreventExitStatus"].split()) == {"2", "3"}
    assert svc["SyslogIdentifier"] == "decon"
    assert svc["ProtectSystem"] == "full"  # not strict: /var/lib, /var/log, /var/lock writable


def test_units_match_the_repo_files():
    for name in UNIT_NAMES:
        assert data_text(f"units/{name}") == (REPO / "units" / name).read_text()


def test_spot_watch_service_always_restarts():
    svc = service("decon-spot-watch.service")
    assert svc["ExecStart"] == "/opt/decon/bin/decon-spot-watch"
    assert svc["Restart"] == "always"


def test_units_put_the_agent_venv_on_path():
    # node.job_command / finalize_command default to bare `decon run` / `decon-finalize`, which
    # live in /opt/decon/bin: without it on PATH the job exits 127 on a real node.
    for name in UNIT_NAMES:
        lines = data_text(f"units/{name}").splitlines()
        [path] = [x.split("=", 2)[2] for x in lines if x.startswith("Environment=PATH=")]
        assert path.split(":")[0] == "/opt/decon/bin", name
        assert {"/usr/bin", "/usr/sbin", "/bin"} <= set(path.split(":")), name
