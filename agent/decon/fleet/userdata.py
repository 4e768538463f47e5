"""Job file -> cloud-init user-data (`#cloud-config`) for one node (SPEC sections 1, 5).

The skeleton (`cloud-init/user-data.yaml.tmpl`), the install script
(`cloud-init/install-agent.sh.tmpl`) and the units (`units/*.service`) are data files shipped in
the package under `decon/data/`; this module fills them in:

- /etc/decon/config.yaml          the job file (only non-default keys), with this host's index/count
- <hooks_dir>/<event>.d/<name>    one file per `hooks` entry, mode 0755
- /etc/systemd/system/*.service   decon.service, decon-spot-watch.service
- /usr/local/sbin/decon-install-agent  makes the /opt/decon venv, pip-installs the agent,
                                  `systemctl enable --now --no-block` the units

EC2 takes at most 16384 bytes of user-data. When the plain text is larger, every write_files
entry is stored `encoding: gz+b64` (cloud-init decodes it) so the result stays text; still too
large is an error naming the size.
"""

from __future__ import annotations

import base64
import gzip
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from decon.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
)

MAX_USER_DATA_BYTES = 16384
INSTALL_SCRIPT_PATH = "/usr/local/sbin/decon-install-agent"
UNIT_DIR = "/etc/systemd/system"
UNIT_NAMES = ("decon.service", "decon-spot-watch.service")
HEADER = "#cloud-config"


@dataclass(frozen=True)
class NodeFile:
    """One file cloud-init writes on the node."""

    path: str
    content: str
    permissions: str = "0644"


def known_top_level_keys() -> frozenset[str]:
    """cloud-config top-level keys (cloud-init/top-level-keys.txt). cloud-init 22.4's schema
    check accepts unknown top-level keys silently; this list is what catches a misspelt one."""
    lines = data_text("cloud-init/top-level-keys.txt").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def data_text(relative: str) -> str:
    """A data file shipped in the package (`decon/data/<relative>`), in source and wheel alike."""
    return resources.files("decon").joinpath("data", *relative.split("/")).read_text()


def node_config(cfg: Config, host_index: int, host_count: int) -> dict[str, Any]:
    """The job file written to the node: the keys that differ from the defaults, host index
    and count set, config_path pointing at /etc/decon/config.yaml, hooks left out (they are
    written as files)."""
    data = config_to_dict(cfg)
    defaults = config_to_dict(Config())
    data["job"].update(host_index=host_index, host_count=host_count)
    data["node"]["config_path"] = str(DEFAULT_CONFIG_PATH)
    data.pop("hooks")
    out: dict[str, Any] = {}
    for section, values in data.items():
        changed = {k: v for k, v in values.items() if v != defaults[section].get(k)}
        if section == "job":
            changed.update(id=cfg.job.id, host_index=host_index, host_count=host_count)
        if changed:
            out[section] = changed
    return out


def pip_args(cfg: Config) -> list[str]:
    """`pip install` arguments: --find-links (when set), extra args, then the spec.

    A wheelhouse adds --find-links only: pip still uses its index for what the wheelhouse
    lacks. Put `--no-index` in `install.extra_pip_args` for a complete, offline wheelhouse.
    """
    args: list[str] = []
    if cfg.install.find_links:
        args += ["--find-links", cfg.install.find_links]
    return [*args, *cfg.install.extra_pip_args, cfg.install.pip_spec]


def install_script(cfg: Config) -> str:
    """The install script with its tokens filled in (shell-quoted)."""
    keep = cfg.node.keep_seconds if cfg.node.on_upload_failure == "keep" else 0
    values = {
        "PYTHON": shlex.quote(cfg.install.python),
        "PIP_ARGS": " ".join(shlex.quote(a) for a in pip_args(cfg)),
        "PIP_OPTIONS": " ".join(shlex.quote(a) for a in pip_args(cfg)[:-1]),
        "FAIL_MINUTES": str(-(-keep // 60)),  # an install failure keeps the node like an upload
    }
    text = data_text("cloud-init/install-agent.sh.tmpl")
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ConfigError("cloud-init/install-agent.sh.tmpl: unfilled @@token@@")  # a bug
    return text


def node_files(cfg: Config, host_index: int, host_count: int) -> list[NodeFile]:
    """Every file cloud-init writes on the node, in write order."""
    config_text = yaml.safe_dump(node_config(cfg, host_index, host_count), sort_keys=False)
    files = [NodeFile(str(DEFAULT_CONFIG_PATH), config_text, "0640")]
    hooks_dir = cfg.node.hooks_dir.rstrip("/")
    for event, scripts in sorted(cfg.hooks.items()):
        for name, script in sorted(scripts.items()):
            if not name or "/" in name or name.startswith(".") or name.strip() != name:
                raise ConfigError(f"hooks.{event}.{name}: not a usable file name")
            files.append(NodeFile(f"{hooks_dir}/{event}.d/{name}", script, "0755"))
    for unit in UNIT_NAMES:
        files.append(NodeFile(f"{UNIT_DIR}/{unit}", data_text(f"units/{unit}")))
    files.append(NodeFile(INSTALL_SCRIPT_PATH, install_script(cfg), "0755"))
    return files


def render_user_data(
    cfg: Config, host_index: int | None = None, host_count: int | None = None
) -> str:
    """The `#cloud-config` user-data of one node, validated (raises ConfigError)."""
    index = cfg.job.host_index if host_index is None else host_index
    count = cfg.job.host_count if host_count is None else host_count
    if count < 1:
        raise ConfigError(f"--host-count: must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ConfigError(f"--host-index: must be in 0..{count - 1}, got {index}")
    files = node_files(cfg, index, count)
    text = _render(files, compress=False)
    if len(text.encode()) > MAX_USER_DATA_BYTES:
        text = _render(files, compress=True)
    check_user_data(text)
    return text


def _render(files: list[NodeFile], compress: bool) -> str:
    doc = yaml.safe_load(data_text("cloud-init/user-data.yaml.tmpl"))
    entries = []
    for f in files:
        entry: dict[str, Any] = {"path": f.path, "owner": "root:root", "permissions": f.permissions}
        if compress:
            packed = gzip.compress(f.content.encode(), mtime=0)
            entry.update(encoding="gz+b64", content=base64.b64encode(packed).decode())
        else:
            entry["content"] = f.content
        entries.append(entry)
    doc["write_files"] = entries
    body = yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=100)
    return f"{HEADER}\n{body}"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so file contents stay readable in the user-data."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def parse_user_data(text: str) -> dict[str, Any]:
    """The cloud-config mapping of rendered user-data (raises ConfigError when malformed)."""
    if not text.startswith(HEADER + "\n"):
        raise ConfigError(f"user-data: first line must be {HEADER}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"user-data: invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError("user-data: top level must be a mapping")
    return doc


def written_files(doc: dict[str, Any]) -> dict[str, str]:
    """path -> decoded content of every write_files entry."""
    out = {}
    for entry in doc.get("write_files", []):
        content = entry.get("content", "")
        if entry.get("encoding") == "gz+b64":
            content = gzip.decompress(base64.b64decode(content)).decode()
        out[entry["path"]] = content
    return out


def check_user_data(text: str) -> None:
    """Size, header, known top-level keys, and a node config that loads: else ConfigError."""
    size = len(text.encode())
    if size > MAX_USER_DATA_BYTES:
        raise ConfigError(
            f"user-data: {size} bytes even compressed; EC2 allows {MAX_USER_DATA_BYTES}"
            " (shorten the hooks)"
        )
    doc = parse_user_data(text)
    unknown = sorted(set(doc) - known_top_level_keys())
    if unknown:
        raise ConfigError(f"user-data: unknown top-level key(s): {', '.join(map(str, unknown))}")
    files = written_files(doc)
    if str(DEFAULT_CONFIG_PATH) not in files:
        raise ConfigError(f"user-data: does not write {DEFAULT_CONFIG_PATH}")
    data = yaml.safe_load(files[str(DEFAULT_CONFIG_PATH)]) or {}
    config_from_dict(data, env={})  # raises ConfigError naming the key
