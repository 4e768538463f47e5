import subprocess
import sys


def decon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "decon.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_commands():
    out = decon("--help")
    assert out.returncode == 0
    for name in ("detect", "run", "render-user-data", "launch", "status", "review"):
        assert name in out.stdout


def test_unknown_command_is_one_line_without_traceback():
    out = decon("frobnicate")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_no_arguments_lists_the_commands():
    out = decon()
    assert out.returncode == 2
    for name in ("detect", "run", "render-user-data", "launch", "status", "review"):
        assert name in out.stderr
