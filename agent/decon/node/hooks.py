"""Shell hooks: `<hooks_dir>/<event>.d/*`, executable files run in lexical order (run-parts).

Each hook gets the run's facts in its environment, its output goes to the run log, and a hook
that fails or times out is logged and never blocks what comes next.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from decon.eventlog import EventLog


@dataclass
class HookResult:
    path: Path
    returncode: int | None  # None: timed out or could not start
    output: str


def hook_files(hooks_dir: str | Path, event: str) -> list[Path]:
    """Executable regular files of `<hooks_dir>/<event>.d/`, in lexical order."""
    folder = Path(hooks_dir) / f"{event}.d"
    if not folder.is_dir():
        return []
    return [
        p
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(".")
    ]


def run_hooks(
    hooks_dir: str | Path,
    event: str,
    facts: Mapping[str, str | int | None],
    log: EventLog,
    timeout: float = 60.0,
) -> list[HookResult]:
    """Run every hook of `event` with `facts` (plus DECON_EVENT) added to the environment."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in facts.items() if v is not None})
    env["DECON_EVENT"] = event
    results = []
    for path in hook_files(hooks_dir, event):
        try:
            proc = subprocess.run(
                [str(path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            result = HookResult(path, proc.returncode, proc.stdout.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired as exc:
            out = (exc.output or b"").decode("utf-8", "replace")
            result = HookResult(path, None, out + f"\n(timed out after {timeout:g}s)")
        except OSError as exc:
            result = HookResult(path, None, f"cannot run: {exc}")
        for line in result.output.splitlines():
            log.line(f"hook {event}/{path.name}: {line}")
        state = "HOOK_OK" if result.returncode == 0 else "HOOK_FAILED"
        log.event(state, event=event, hook=path.name, returncode=result.returncode)
        results.append(result)
    return results
