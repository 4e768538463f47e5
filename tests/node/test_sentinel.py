import pytest

from conftest import make_config
from decon.config import AwsSection
from decon.node.sentinel import (
    FAILED_UPLOAD,
    SUCCESS,
    Sentinel,
    clear_failed_upload,
    file_counts,
    read_sentinel,
    write_failed_upload,
    write_success,
)
from decon.storage import StorageError, open_storage


def sentinel(status="success", **kw):
    base = dict(
        run_id="run-20261123-143012Z-i-0abc",
        job_id="job",
        instance_id="i-0abc",
        host_index=1,
        host_count=8,
        finalized_at="2026-11-23T14:30:12Z",
        status=status,
        completion_status="normal",
        exit_code=0,
        reason="job exited 0",
        files={"assigned": 3, "done": 3, "contaminated": 1, "failed": 0},
        artifacts=["s3://b/runs/x/manifest.json"],
    )
    base.update(kw)
    return Sentinel(**base)


@pytest.fixture(params=["s3", "local"])
def runs(request, tmp_path):
    if request.param == "local":
        return open_storage(str(tmp_path / "runs"), AwsSection())
    request.getfixturevalue("s3").client().create_bucket(Bucket="bkt")
    return open_storage("s3://bkt/out/job/runs/", AwsSection())


def test_read_prefers_success_over_failed_upload(runs):
    run_id = sentinel().run_id
    assert read_sentinel(runs, run_id) is None
    write_failed_upload(runs, sentinel("failed_upload", last_error="AccessDenied"))
    got = read_sentinel(runs, run_id)
    assert got is not None and got.status == "failed_upload" and got.last_error == "AccessDenied"
    assert write_success(runs, sentinel()) is True
    assert read_sentinel(runs, run_id) == sentinel()
    assert write_success(runs, sentinel(reason="second")) is False  # never twice
    clear_failed_upload(runs, run_id)
    assert [o.key for o in runs.list(run_id)] == [f"{run_id}/{SUCCESS}"]


def test_json_has_exactly_the_spec_fields():
    import json

    data = json.loads(sentinel().to_json())
    assert set(data) == {
        "run_id", "job_id", "instance_id", "host_index", "host_count", "finalized_at", "status",
        "completion_status", "exit_code", "reason", "files", "artifacts",
    }  # fmt: skip
    failed = json.loads(sentinel("failed_upload", last_error="boom").to_json())
    assert set(failed) == set(data) | {"last_error"}
    assert sentinel("failed_upload").name == FAILED_UPLOAD and sentinel().name == SUCCESS


def test_garbage_sentinel_is_a_clear_error(runs):
    runs.put_bytes("r/_SUCCESS", b"not json")
    with pytest.raises(StorageError, match="_SUCCESS: not a decon sentinel"):
        read_sentinel(runs, "r")
    runs.put_bytes("r/_SUCCESS", b'{"run_id": "r"}')
    with pytest.raises(StorageError, match="missing job_id"):
        read_sentinel(runs, "r")


def test_file_counts_default_to_zero():
    assert file_counts({"assigned": 4, "done": "x", "extra": 1}) == {
        "assigned": 4, "done": 0, "contaminated": 0, "failed": 0,
    }  # fmt: skip


def test_wrapper_call_shape(s3, node_root):
    """The wrapper calls read_sentinel(open_storage(cfg.output_prefix("runs"), cfg.aws), id)."""
    s3.client().create_bucket(Bucket="bkt")
    cfg = make_config(node_root, output={"uri": "s3://bkt/out"})
    store = open_storage(cfg.output_prefix("runs"), cfg.aws)
    assert store.uri("x") == "s3://bkt/out/test-job/runs/x"
    write_success(store, sentinel())
    assert read_sentinel(open_storage(cfg.output_prefix("runs"), cfg.aws), sentinel().run_id)
