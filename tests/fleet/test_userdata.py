"""Rendered user-data: Debian's `cloud-init schema`, our own top-level key check, the 16 KB
limit, the config round trip, hooks and units as files, and the CLI."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_config
from decon.config import ConfigError, load_config
from decon.fleet.userdata import (
    INSTALL_SCRIPT_PATH,
    MAX_USER_DATA_BYTES,
    check_user_data,
    parse_user_data,
    render_user_data,
    written_files,
)

needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None and os.environ.get("CI") != "true",
    reason="cloud-init is not installed (apt-get install cloud-init; .ci/run does)",
)


def job(tmp_path: Path, **sections):
    base = {
        "job": {"id": "my-job", "host_count": 4},
        "input": {"uri": "s3://bucket/in/"},
        "output": {"uri": "s3://bucket/out/"},
        "detect": {"mode": "minhash"},
        "install": {"pip_spec": "decon-agent==0.1.0"},
        "hooks": {"pre-finalize": {"10-sync": "#!/bin/sh\necho syncing\n"}},
    }
    base.update(sections)
    return make_config(tmp_path, **base)


def cloud_init_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True, check=False
    )


@needs_cloud_init
@pytest.mark.parametrize("compressed", [False, True])
def test_user_data_passes_cloud_init_schema(tmp_path, compressed):
    hooks = {"pre-finalize": {"10-sync": "#!/bin/sh\necho syncing\n"}}
    if compressed:  # large enough to need write_files encoding gz+b64
        hooks["post-finalize"] = {"50-big": "#!/bin/sh\n" + "echo 'repetitive line'\n" * 1500}
    text = render_user_data(job(tmp_path, hooks=hooks), host_index=2)
    assert ("gz+b64" in text) == compressed
    out = tmp_path / "user-data"
    out.write_text(text)
    result = cloud_init_schema(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


@needs_cloud_init
def test_cloud_init_schema_can_fail_here(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("#cloud-config\nwrite_files:\n- path: /x\n  permissions: 644\n  bogus: 1\n")
    assert cloud_init_schema(bad).returncode != 0


def test_unknown_top_level_key_is_rejected(tmp_path):
    text = render_user_data(job(tmp_path))
    check_user_data(text)
    with pytest.raises(ConfigError, match="unknown top-level key.*runcmds"):
        check_user_data(text + "runcmds: [[echo, hi]]\n")


def test_config_round_trips_through_load_config(tmp_path):
    cfg = job(tmp_path, node={"keep_seconds": 120, "job_command": ["decon", "run", "-v"]})
    doc = parse_user_data(render_user_data(cfg, host_index=3, host_count=8))
    files = written_files(doc)
    node_cfg = tmp_path / "node-config.yaml"
    node_cfg.write_text(files["/etc/decon/config.yaml"])
    loaded = load_config(node_cfg, env={})
    assert (loaded.job.host_index, loaded.job.host_count) == (3, 8)
    loaded.node.config_path = "/etc/decon/config.yaml"
    expected = dataclasses.replace(cfg, hooks={})
    expected.job = dataclasses.replace(cfg.job, host_index=3, host_count=8)
    expected.node = dataclasses.replace(cfg.node, config_path="/etc/decon/config.yaml")
    assert loaded == expected
    # Only non-default keys are written: the node gets the agent's own defaults.
    written_node = yaml.safe_load(files["/etc/decon/config.yaml"])["node"]
    assert "upload_attempts" not in written_node and written_node["keep_seconds"] == 120


def test_hooks_units_and_install_script_are_written(tmp_path):
    cfg = job(
        tmp_path,
        install={
            "pip_spec": "https://example.com/decon_agent-0.1.0-py3-none-any.whl",
            "find_links": "https://example.com/wheelhouse/",
            "extra_pip_args": ["--no-index"],
            "python": "python3.11",
        },
    )
    doc = parse_user_data(render_user_data(cfg))
    entries = {e["path"]: e for e in doc["write_files"]}
    hook = entries[f"{cfg.node.hooks_dir}/pre-finalize.d/10-sync"]
    assert hook["permissions"] == "0755" and hook["content"] == "#!/bin/sh\necho syncing\n"
    for unit in ("decon.service", "decon-spot-watch.service"):
        assert (
            entries[f"/etc/systemd/system/{unit}"]["content"] == (REPO / "units" / unit).read_text()
        )
    script = entries[INSTALL_SCRIPT_PATH]["content"]
    assert entries[INSTALL_SCRIPT_PATH]["permissions"] == "0755"
    assert (
        "-m pip install -q --find-links https://example.com/wheelhouse/ --no-index "
        "https://example.com/decon_agent-0.1.0-py3-none-any.whl" in script
    )
    assert "PYTHON=python3.11" in script
    assert "systemctl enable --now --no-block decon-spot-watch.service decon.service" in script
    assert doc["runcmd"] == [[INSTALL_SCRIPT_PATH]]


def test_install_script_is_valid_shell_and_quotes_values(tmp_path):
    cfg = job(tmp_path, install={"pip_spec": "decon-agent[x]; rm -rf /"})
    script = written_files(parse_user_data(render_user_data(cfg)))[INSTALL_SCRIPT_PATH]
    assert "'decon-agent[x]; rm -rf /'" in script
    path = tmp_path / "install.sh"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0


def test_pip_self_upgrade_uses_the_wheelhouse_options(tmp_path):
    # An offline node must not spend minutes retrying PyPI just to upgrade pip.
    install = {
        "find_links": "http://10.0.0.4:8080/",
        "extra_pip_args": ["--no-index", "--trusted-host", "10.0.0.4"],
    }
    cfg = job(tmp_path, install=install)
    script = written_files(parse_user_data(render_user_data(cfg)))[INSTALL_SCRIPT_PATH]
    options = "--find-links http://10.0.0.4:8080/ --no-index --trusted-host 10.0.0.4"
    assert f"pip install -q --upgrade {options} pip || true" in script
    assert f"pip install -q {options} decon-agent || fail" in script


def test_large_hooks_are_compressed_under_16k(tmp_path):
    # ~40 KB of very repetitive hook text: too big plain, small compressed.
    big = "#!/bin/sh\n" + "echo 'a long and repetitive hook line for the size test'\n" * 700
    cfg = job(tmp_path, hooks={"post-finalize": {"50-big": big}})
    text = render_user_data(cfg)
    assert len(text.encode()) <= MAX_USER_DATA_BYTES
    doc = parse_user_data(text)
    assert {e.get("encoding") for e in doc["write_files"]} == {"gz+b64"}
    assert written_files(doc)[f"{cfg.node.hooks_dir}/post-finalize.d/50-big"] == big


def test_incompressible_hooks_too_large_is_a_clear_error(tmp_path):
    noise = os.urandom(30000).hex()
    cfg = job(tmp_path, hooks={"post-finalize": {"50-big": f"#!/bin/sh\n# {noise}\n"}})
    with pytest.raises(ConfigError, match=r"bytes even compressed; EC2 allows 16384"):
        render_user_data(cfg)


def test_plain_user_data_is_small(tmp_path):
    text = render_user_data(job(tmp_path))
    assert len(text.encode()) < MAX_USER_DATA_BYTES
    assert text.startswith("#cloud-config\n")
    assert all("encoding" not in e for e in parse_user_data(text)["write_files"])


@pytest.mark.parametrize(("index", "count"), [(4, 4), (-1, 4), (0, 0)])
def test_bad_host_index_or_count(tmp_path, index, count):
    with pytest.raises(ConfigError, match="--host-"):
        render_user_data(job(tmp_path), host_index=index, host_count=count)


def test_bad_hook_name(tmp_path):
    cfg = job(tmp_path, hooks={"pre-finalize": {"../evil": "#!/bin/sh\n"}})
    with pytest.raises(ConfigError, match=r"hooks\.pre-finalize\.\.\./evil"):
        render_user_data(cfg)


# -- the CLI -----------------------------------------------------------------------------------


def decon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decon.cli", *args], capture_output=True, text=True, check=False
    )


def test_cli_writes_the_file(tmp_path):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(
        "job: {id: j, host_count: 2}\ninput: {uri: s3://b/i/}\noutput: {uri: s3://b/o/}\n"
        "reference: {uri: s3://b/evals/}\n"
    )
    out = tmp_path / "ud.yaml"
    args = ("render-user-data", "--config", str(cfg_file), "--host-index", "1")
    result = decon(*args, "-o", str(out))
    assert result.returncode == 0, result.stderr
    files = written_files(parse_user_data(out.read_text()))
    assert yaml.safe_load(files["/etc/decon/config.yaml"])["job"] == {
        "id": "j",
        "host_index": 1,
        "host_count": 2,
    }
    printed = decon(*args)
    assert printed.stdout == out.read_text()


@pytest.mark.parametrize(
    ("text", "needle"),
    [("job: {id: j, bogus: 1}\n", "job.bogus"), ("job: [\n", "invalid YAML")],
)
def test_cli_bad_config_is_one_line(tmp_path, text, needle):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(text)
    result = decon("render-user-data", "--config", str(cfg_file))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_bad_host_index_is_one_line(tmp_path):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(
        "job: {id: j, host_count: 2}\ninput: {uri: s3://b/i/}\noutput: {uri: s3://b/o/}\n"
        "reference: {uri: s3://b/e/}\n"
    )
    result = decon("render-user-data", "--config", str(cfg_file), "--host-index", "5")
    assert result.returncode != 0 and result.stderr.count("\n") == 1
    assert "--host-index: must be in 0..1" in result.stderr


# -- packaging ---------------------------------------------------------------------------------


def test_wheel_ships_units_and_templates(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("agent", "units", "cloud-init"):
        shutil.copytree(
            REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("*.egg-info")
        )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for path in (
        "decon/data/units/decon.service",
        "decon/data/units/decon-spot-watch.service",
        "decon/data/cloud-init/user-data.yaml.tmpl",
        "decon/data/cloud-init/install-agent.sh.tmpl",
        "decon/data/cloud-init/top-level-keys.txt",
    ):
        assert path in names
    # The corpus generator is a dev tool (devtools/decon_synth), not part of the agent.
    assert [n for n in names if n.startswith(("decon/synth/", "decon_synth/"))] == []
    # The installed layout renders too (no repo files behind it).
    probe = (
        "import decon, sys; from decon.config import config_from_dict;"
        "from decon.fleet.userdata import render_user_data;"
        "assert decon.__file__.startswith(sys.argv[1]), decon.__file__;"
        "print(len(render_user_data(config_from_dict({'job': {'id': 'j'}}))))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    ran = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "site")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout) > 1000


def test_cli_refuses_a_job_without_input_output_and_reference(tmp_path):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text("")
    result = decon("render-user-data", "--config", str(cfg_file), "-o", str(tmp_path / "ud"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"cli.py: {cfg_file}: render-user-data needs a complete job: "
        "missing input.uri, output.uri, reference.uri"
    ]
    assert not (tmp_path / "ud").exists()
    cfg_file.write_text("input: {uri: s3://b/i/}\noutput: {reports: s3://b/r/}\n")
    result = decon("render-user-data", "--config", str(cfg_file))
    assert result.stderr.strip().endswith("missing output.uri, reference.uri")
