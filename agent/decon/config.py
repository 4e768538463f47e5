"""The job file: one typed model, validated once at the edge, passed down.

`load_config(path)` reads YAML, rejects unknown keys and wrong types with a message naming the
key (e.g. ``node.poweroff_command: expected a list of strings, got int``), applies the environment
overrides of SPEC section 4 and returns a `Config`. Nothing below the edge re-validates.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decon.detect.options import DetectOptions
from decon.errors import UserError

DEFAULT_CONFIG_PATH = Path("/etc/decon/config.yaml")


class ConfigError(UserError):
    """The job file is missing, unreadable, or invalid."""


@dataclass
class JobSection:
    id: str = "decon-job"
    host_index: int = 0  # PMR_HOST_INDEX
    host_count: int = 1  # PMR_HOST_COUNT
    max_files_debug: int | None = None  # MAX_FILES_DEBUG


@dataclass
class InputSection:
    uri: str = ""  # s3://bucket/prefix/ or a local directory


@dataclass
class OutputSection:
    """Where results go; reports/cleaned/runs default to {uri}/{job.id}/<name>/."""

    uri: str = ""
    reports: str = ""
    cleaned: str = ""
    runs: str = ""


@dataclass
class ReferenceSection:
    uri: str = ""  # s3://bucket/evals/ or a local directory of Decon eval records


@dataclass
class AwsSection:
    region: str = "us-east-1"
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL, for S3-compatible stores


@dataclass
class NodeSection:
    """On-instance paths and policies. Every path is configurable so tests use a temp root."""

    config_path: str = str(DEFAULT_CONFIG_PATH)
    hooks_dir: str = "/etc/decon/hooks"
    state_dir: str = "/var/lib/decon"
    log_file: str = "/var/log/decon-run.log"
    lock_file: str = "/var/lock/decon.finalize.lock"
    job_command: list[str] = field(default_factory=lambda: ["decon", "run"])
    finalize_command: list[str] = field(default_factory=lambda: ["decon-finalize"])
    poweroff_command: list[str] = field(default_factory=lambda: ["systemctl", "poweroff"])
    journal_unit: str = "decon"
    instance_id: str | None = None  # default: from IMDS, else the host name
    on_upload_failure: str = "keep"  # keep (for keep_seconds, then power off) | poweroff
    keep_seconds: int = 3600
    hook_timeout_seconds: int = 60
    upload_attempts: int = 7
    upload_base_wait_seconds: float = 1.0


@dataclass
class SpotSection:
    imds_endpoint: str = "http://169.254.169.254"
    poll_interval_seconds: float = 2.0
    checkpoint_deadline_seconds: float = 60.0
    deadline_margin_seconds: float = 15.0
    token_ttl_seconds: int = 21600
    request_timeout_seconds: float = 2.0


@dataclass
class InstallSection:
    """How cloud-init installs the agent into /opt/decon."""

    pip_spec: str = "decon-agent"  # a PyPI spec or a wheel URL
    find_links: str | None = None  # a wheelhouse URL for --find-links
    extra_pip_args: list[str] = field(default_factory=list)
    python: str = "python3"  # the interpreter that makes /opt/decon (>= 3.11, e.g. python3.11)


@dataclass
class LaunchSection:
    """How `decon launch` starts the fleet (read only on the laptop)."""

    ami: str = ""  # required by `decon launch`
    instance_type: str = "m6i.2xlarge"
    instance_types: list[str] = field(default_factory=list)  # tried in order on no capacity
    subnet_id: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    iam_instance_profile: str | None = None  # instance profile name or ARN
    key_name: str | None = None  # optional: the fleet needs no ssh
    spot: bool = True
    max_price: float | None = None  # USD per hour; None = up to the on-demand price
    metadata_hop_limit: int = 1  # IMDSv2 PUT response hop limit
    root_volume_gb: int | None = None  # None = the AMI's size
    root_volume_type: str = "gp3"
    tags: dict[str, str] = field(default_factory=dict)  # extra tags on instances and volumes
    use_launch_index: bool = False  # one call for all hosts; nodes read ami-launch-index


@dataclass
class RunSection:
    """How `decon run` moves files: concurrency, disk budget, retries, heartbeat."""

    download_concurrency: int = 4  # files downloading at once
    upload_concurrency: int = 4  # files uploading at once
    transfer_threads: int = 8  # transfer manager threads per file (multipart parts in flight)
    multipart_threshold_mb: int = 64
    multipart_chunk_mb: int = 16
    max_disk_mb: int = 20480  # local input + outputs of files in flight
    heartbeat_seconds: float = 30.0
    retry_attempts: int = 5  # per S3 operation, transient errors only
    retry_base_seconds: float = 1.0  # exponential backoff: base, 2*base, 4*base, ...
    retry_max_seconds: float = 30.0
    host_index_from_imds: bool = False  # job.host_index := IMDS ami-launch-index
    work_dir: str = ""  # default: {node.state_dir}/work
    # shard: md5(key) mod host_count | queue: the job's SQS queue | "": shard for `decon run`,
    # queue for `decon launch` (which writes queue into the nodes' config)
    distribution: str = ""
    queue_url: str = ""  # default: the queue named decon-{job.id}
    visibility_timeout_seconds: int = 300  # a lost node's file goes to another after this
    max_receive_count: int = 3  # receives before a file's message moves to the DLQ
    autoscaling_group: str = ""  # set by decon launch: the group this node protects itself in

    @property
    def queued(self) -> bool:
        """This node takes its files from the job queue (`decon run`)."""
        return self.distribution == "queue"

    @property
    def fleet_queued(self) -> bool:
        """`decon launch`, `status` and `stop` treat the job as a queue job (their default)."""
        return self.distribution in ("", "queue")


@dataclass
class Config:
    job: JobSection = field(default_factory=JobSection)
    input: InputSection = field(default_factory=InputSection)
    output: OutputSection = field(default_factory=OutputSection)
    reference: ReferenceSection = field(default_factory=ReferenceSection)
    detect: DetectOptions = field(default_factory=DetectOptions)
    aws: AwsSection = field(default_factory=AwsSection)
    node: NodeSection = field(default_factory=NodeSection)
    spot: SpotSection = field(default_factory=SpotSection)
    run: RunSection = field(default_factory=RunSection)
    install: InstallSection = field(default_factory=InstallSection)
    launch: LaunchSection = field(default_factory=LaunchSection)
    # hooks: event -> {file name -> script text}, written to hooks_dir/<event>.d/ by cloud-init
    hooks: dict[str, dict[str, str]] = field(default_factory=dict)

    def work_dir(self) -> Path:
        """The job's scratch space: `run.work_dir`, or `{node.state_dir}/work`."""
        return Path(self.run.work_dir or Path(self.node.state_dir) / "work")

    def output_prefix(self, name: str) -> str:
        """The URI of an output area ('reports', 'cleaned' or 'runs'), ending in '/'."""
        explicit = getattr(self.output, name)
        base = explicit or f"{self.output.uri.rstrip('/')}/{self.job.id}/{name}"
        return base.rstrip("/") + "/"


HOOK_EVENTS = ("on-interrupt", "on-rebalance", "pre-finalize", "post-finalize")

# Environment variable -> (section, key). Applied after the file, before validation.
ENV_OVERRIDES = {
    "PMR_HOST_INDEX": ("job", "host_index"),
    "PMR_HOST_COUNT": ("job", "host_count"),
    "MAX_FILES_DEBUG": ("job", "max_files_debug"),
    "AWS_ENDPOINT_URL": ("aws", "endpoint_url"),
    "DECON_IMDS_ENDPOINT": ("spot", "imds_endpoint"),
}


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` of the node's commands; not given, `load_config` takes $DECON_CONFIG,
    else the default path."""
    parser.add_argument(
        "--config", help=f"job file (default: $DECON_CONFIG or {DEFAULT_CONFIG_PATH})"
    )


def load_config(
    path: str | Path | None = None, env: typing.Mapping[str, str] | None = None
) -> Config:
    """Load, override from the environment, and validate the job file at `path`."""
    path = Path(path or os.environ.get("DECON_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = config_from_dict(data, env=os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    cfg.node.config_path = str(path)
    return cfg


def config_from_dict(data: dict[str, Any], env: typing.Mapping[str, str] | None = None) -> Config:
    """Build a validated `Config` from parsed YAML (plus optional environment overrides)."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = (env or {}).get(var)
        if value not in (None, ""):
            sect = data.setdefault(section, {})
            if isinstance(sect, dict):
                sect[key] = _coerce_env(value, Config, section, key, var)
    cfg = _build(Config, data, "")
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems[0])
    return cfg


def validate(cfg: Config) -> list[str]:
    """Cross-field checks; each problem names its key."""
    problems = [f"detect.{p}" for p in cfg.detect.validate()]
    if cfg.job.host_count < 1:
        problems.append("job.host_count: must be >= 1")
    if not 0 <= cfg.job.host_index < max(cfg.job.host_count, 1):
        problems.append(
            f"job.host_index: must be in 0..{cfg.job.host_count - 1}, got {cfg.job.host_index}"
        )
    if cfg.job.max_files_debug is not None and cfg.job.max_files_debug < 1:
        problems.append("job.max_files_debug: must be >= 1")
    if not cfg.job.id or "/" in cfg.job.id:
        problems.append("job.id: must be a non-empty name without '/'")
    if cfg.node.on_upload_failure not in ("keep", "poweroff"):
        problems.append("node.on_upload_failure: must be keep or poweroff")
    for key in ("job_command", "finalize_command", "poweroff_command"):
        if not getattr(cfg.node, key):
            problems.append(f"node.{key}: must not be empty")
    if cfg.node.upload_attempts < 1:
        problems.append("node.upload_attempts: must be >= 1")
    if cfg.spot.poll_interval_seconds <= 0:
        problems.append("spot.poll_interval_seconds: must be > 0")
    if not 21600 >= cfg.spot.token_ttl_seconds >= 1:
        problems.append("spot.token_ttl_seconds: must be in 1..21600 (IMDSv2 bounds)")
    problems.extend(_validate_launch(cfg.launch))
    for key in (
        "download_concurrency",
        "upload_concurrency",
        "transfer_threads",
        "multipart_threshold_mb",
        "multipart_chunk_mb",
        "max_disk_mb",
        "retry_attempts",
    ):
        if getattr(cfg.run, key) < 1:
            problems.append(f"run.{key}: must be >= 1")
    if cfg.run.multipart_chunk_mb < 5:
        problems.append("run.multipart_chunk_mb: must be >= 5 (the S3 minimum part size)")
    if cfg.run.heartbeat_seconds <= 0:
        problems.append("run.heartbeat_seconds: must be > 0")
    if cfg.run.retry_base_seconds < 0 or cfg.run.retry_max_seconds < 0:
        problems.append("run.retry_base_seconds/retry_max_seconds: must be >= 0")
    problems.extend(_validate_queue(cfg.run))
    for event in cfg.hooks:
        if event not in HOOK_EVENTS:
            problems.append(f"hooks.{event}: unknown event (known: {', '.join(HOOK_EVENTS)})")
    return problems


def _validate_queue(run: RunSection) -> list[str]:
    problems = []
    if run.distribution not in ("", "shard", "queue"):
        problems.append(f"run.distribution: must be shard or queue, got {run.distribution!r}")
    # The heartbeat extends held messages: they must not time out between two beats.
    if not 2 * run.heartbeat_seconds < run.visibility_timeout_seconds <= 43200:
        problems.append(
            "run.visibility_timeout_seconds: must be more than twice run.heartbeat_seconds "
            f"({run.heartbeat_seconds:g}) and at most 43200 (the SQS maximum)"
        )
    if not 1 <= run.max_receive_count <= 1000:
        problems.append("run.max_receive_count: must be in 1..1000")
    return problems


JOB_KEYS = ("input.uri", "output.uri", "reference.uri")


def missing_job_keys(cfg: Config) -> list[str]:
    """The places a node needs that the config leaves empty (output.uri counts as set when
    output.reports, output.cleaned and output.runs all are)."""
    missing = []
    if not cfg.input.uri:
        missing.append("input.uri")
    areas = (cfg.output.reports, cfg.output.cleaned, cfg.output.runs)
    if not cfg.output.uri and not all(areas):
        missing.append("output.uri")
    if not cfg.reference.uri:
        missing.append("reference.uri")
    return missing


def require_job(cfg: Config, command: str, also: tuple[str, ...] = ()) -> None:
    """A ConfigError listing every missing key when the config cannot run a job (`also`:
    further keys the command needs, checked as empty/unset)."""
    missing = missing_job_keys(cfg)
    for key in also:
        section, _, name = key.partition(".")
        if not getattr(getattr(cfg, section), name):
            missing.append(key)
    if missing:
        where = cfg.node.config_path
        raise ConfigError(f"{where}: {command} needs a complete job: missing {', '.join(missing)}")


def _validate_launch(launch: LaunchSection) -> list[str]:
    problems = []
    if not 1 <= launch.metadata_hop_limit <= 64:
        problems.append("launch.metadata_hop_limit: must be in 1..64")
    if launch.max_price is not None and launch.max_price <= 0:
        problems.append("launch.max_price: must be > 0")
    if launch.root_volume_gb is not None and launch.root_volume_gb < 1:
        problems.append("launch.root_volume_gb: must be >= 1")
    if not launch.instance_type:
        problems.append("launch.instance_type: must not be empty")
    for key in launch.tags:
        if key.startswith(("decon:", "aws:")) or key == "Name":
            problems.append(f"launch.tags.{key}: reserved tag (decon sets it)")
    return problems


def _coerce_env(value: str, cls: type, section: str, key: str, var: str) -> Any:
    hints = typing.get_type_hints(typing.get_type_hints(cls)[section])
    want = hints[key]
    if int in _members(want):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{var}: expected an integer, got {value!r}") from None
    return value


def _members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            name = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{name}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        kwargs[key] = _check(hints[key], value, name)
    return cls(**kwargs)


def _check(tp: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, name)
    options = _members(tp)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{name}: must not be empty")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _check_one(option, value, name)
        except ConfigError as exc:
            errors.append(exc)
    raise errors[0]


def _check_one(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list of {_tname(item)}, got {_kind(value)}")
        return [_check(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vtype = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {_kind(value)}")
        return {str(k): _check(vtype, v, f"{name}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {_kind(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {_kind(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {_kind(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {_kind(value)}")
        return value
    raise ConfigError(f"{name}: unsupported type {tp!r}")  # pragma: no cover - model bug


def _tname(tp: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers"}.get(tp, "values")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-data form of a config (for rendering user-data and for tests)."""
    return dataclasses.asdict(cfg)
