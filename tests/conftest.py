"""Shared fixtures. Every test runs under a temporary root; nothing touches /etc or /var."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from decon.config import Config, config_from_dict

REPO = Path(__file__).resolve().parents[1]
# Decon's own bundled reference set, beside the checkout on the team's machines; tests that need
# it skip without it.
BUNDLED_EVALS = Path(
    os.environ.get("DECON_BUNDLED_EVALS") or REPO.parent / "shared" / "data" / "decon-bundled-evals"
)


@pytest.fixture
def node_root(tmp_path: Path) -> Path:
    """A temporary stand-in for / on a node."""
    for sub in ("etc/decon/hooks", "var/lib/decon", "var/log", "var/lock"):
        (tmp_path / sub).mkdir(parents=True)
    return tmp_path


def make_config(root: Path, **sections: dict) -> Config:
    """A valid config whose node paths all live under `root`."""
    node = {
        "config_path": str(root / "etc/decon/config.yaml"),
        "hooks_dir": str(root / "etc/decon/hooks"),
        "state_dir": str(root / "var/lib/decon"),
        "log_file": str(root / "var/log/decon-run.log"),
        "lock_file": str(root / "var/lock/decon.finalize.lock"),
        "poweroff_command": ["true"],
    }
    node.update(sections.pop("node", {}))
    data = {"job": {"id": "test-job"}, "node": node}
    data.update(sections)
    return config_from_dict(data, env={})


pytest_plugins = ["fakes.moto_s3", "fakes.faulty_proxy", "fakes.detect_corpus"]

# tests/e2e boots a VM (minutes under TCG): only `make e2e` (DECON_E2E=1) collects it.
collect_ignore = [] if os.environ.get("DECON_E2E") else ["e2e"]
