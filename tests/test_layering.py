"""The package's import layering, read from the source (every import statement, also those
inside functions and `if TYPE_CHECKING:` blocks):

    detect/   the detector core: nothing from the job, the node, the fleet, storage or config
    storage/  below the job and the node: nothing from them, the fleet or the detector
    node/     on the instance: never the fleet (the laptop side)
    all of it never decon_synth (devtools/: the corpus generator of tests, bench and demo)

One exception, at a command's edge: `decon detect --config job.yaml` reads the job file's
detect section (detect/cli.py imports decon.config there, and nothing else does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agent" / "decon"

FORBIDDEN = {
    "detect": (
        "decon.jobrun",
        "decon.node",
        "decon.fleet",
        "decon.storage",
        "decon.config",
        "decon.cli",
    ),
    "storage": ("decon.jobrun", "decon.node", "decon.fleet", "decon.detect"),
    "node": ("decon.fleet",),
}
# Dev-only packages beside the product: nothing in it may import them.
DEV_ONLY = ("decon_synth",)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, relative ones resolved against `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


# (file relative to the package's parent, banned module it may import)
EDGE_EXCEPTIONS = {("decon/detect/cli.py", "decon.config")}


def violations(package: Path, layer: str, banned: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((package / layer).rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        where = path.relative_to(package.parent).as_posix()
        for line, name in imported_modules(path.read_text(), module):
            hit = next((b for b in banned if name == b or name.startswith(b + ".")), None)
            if hit is not None and (where, hit) not in EDGE_EXCEPTIONS:
                bad.append(f"{where}:{line}: imports {name}")
    return sorted(set(bad))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert violations(PACKAGE, layer, FORBIDDEN[layer]) == []


def test_the_package_never_imports_the_dev_tools() -> None:
    assert violations(PACKAGE, ".", DEV_ONLY) == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A planted violation of each form is found (so an empty list above means something)."""
    layer = tmp_path / "decon" / "detect"
    layer.mkdir(parents=True)
    (layer / "bad.py").write_text(
        "import decon.jobrun.job\n"
        "from decon.node import state\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from decon.config import Config\n"
        "def late():\n"
        "    from .. import storage\n"
        "from decon.detect import options\n"  # its own layer: fine
        "from decon.errors import UserError\n"  # below it: fine
    )
    found = violations(tmp_path / "decon", "detect", FORBIDDEN["detect"])
    (layer / "cli.py").write_text("from decon.config import load_config\nimport decon.node\n")
    edge = violations(tmp_path / "decon", "detect", FORBIDDEN["detect"])
    assert [f for f in edge if f.startswith("decon/detect/cli.py")] == [
        "decon/detect/cli.py:2: imports decon.node"  # the edge may read the config, no more
    ]
    assert [f.split(": imports ")[1] for f in found] == [
        "decon.jobrun.job",
        "decon.node",
        "decon.node.state",
        "decon.config",
        "decon.config.Config",
        "decon.storage",
    ]
    (tmp_path / "decon" / "evals").mkdir()
    (tmp_path / "decon" / "evals" / "packaged.py").write_text(
        "def load():\n    from decon_synth.benchmarks import load_benchmark\n"
    )
    assert violations(tmp_path / "decon", ".", DEV_ONLY) == [
        "decon/evals/packaged.py:2: imports decon_synth.benchmarks",
        "decon/evals/packaged.py:2: imports decon_synth.benchmarks.load_benchmark",
    ]
