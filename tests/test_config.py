from pathlib import Path

import pytest

from decon.config import ConfigError, config_from_dict, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_defaults_and_nested_sections(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "job: {id: j1}\noutput: {uri: 's3://b/p/'}\n"
            "detect: {tokenizer: cl100k, ngram_size: 7}\nspot: {poll_interval_seconds: 1}\n",
        ),
        env={},
    )
    assert cfg.job.id == "j1"
    assert cfg.detect.tokenizer == "cl100k" and cfg.detect.ngram_size == 7
    assert cfg.spot.poll_interval_seconds == 1.0 and isinstance(
        cfg.spot.poll_interval_seconds, float
    )
    assert cfg.node.poweroff_command == ["systemctl", "poweroff"]
    assert cfg.output_prefix("reports") == "s3://b/p/j1/reports/"
    assert cfg.output_prefix("runs") == "s3://b/p/j1/runs/"
    assert cfg.node.config_path == str(tmp_path / "job.yaml")


def test_explicit_output_prefix_wins():
    cfg = config_from_dict({"output": {"uri": "s3://b/p", "cleaned": "s3://other/c"}})
    assert cfg.output_prefix("cleaned") == "s3://other/c/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobb: {id: x}\n", "jobb: unknown key"),
        ("node: {poweroff_cmd: [x]}\n", "node.poweroff_cmd: unknown key"),
        ("node: {poweroff_command: 5}\n", "node.poweroff_command: expected a list of strings"),
        ("node: {poweroff_command: [ok, 3]}\n", "node.poweroff_command[1]: expected a string"),
        ("spot: {poll_interval_seconds: fast}\n", "spot.poll_interval_seconds: expected a number"),
        ("job: {host_count: true}\n", "job.host_count: expected an integer"),
        ("detect: {purify: 'yes'}\n", "detect.purify: expected true or false"),
        ("detect: {tokenizer: gpt9}\n", "detect.tokenizer: must be word, p50k or cl100k"),
        ("job: {host_index: 3, host_count: 2}\n", "job.host_index: must be in 0..1"),
        ("hooks: {on-boot: {a: 'true'}}\n", "hooks.on-boot: unknown event"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("job: [\n", "invalid YAML"),
        ("spot: {token_ttl_seconds: 30000}\n", "spot.token_ttl_seconds"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml", env={})


def test_env_overrides(tmp_path):
    env = {
        "PMR_HOST_INDEX": "2",
        "PMR_HOST_COUNT": "4",
        "MAX_FILES_DEBUG": "3",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "DECON_IMDS_ENDPOINT": "http://127.0.0.1:1338",
    }
    cfg = load_config(write(tmp_path, "job: {host_count: 1}\n"), env=env)
    assert (cfg.job.host_index, cfg.job.host_count, cfg.job.max_files_debug) == (2, 4, 3)
    assert cfg.aws.endpoint_url == "http://127.0.0.1:5000"
    assert cfg.spot.imds_endpoint == "http://127.0.0.1:1338"


def test_bad_env_override_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="PMR_HOST_INDEX: expected an integer"):
        load_config(write(tmp_path, "{}\n"), env={"PMR_HOST_INDEX": "two"})
