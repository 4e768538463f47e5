import io
import os
from contextlib import redirect_stderr

import pytest

from decon.config import AwsSection
from decon.errors import UserError, guarded_main
from decon.storage import (
    LocalStorage,
    ObjectInfo,
    S3Storage,
    StorageError,
    TransferSettings,
    is_transient,
    open_storage,
    s3_client,
)
from fakes.iam import user_with_policy

BUCKET = "bkt"


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path):
    """The same behaviour from both implementations."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        s3.client().create_bucket(Bucket=BUCKET)
        return open_storage(f"s3://{BUCKET}/some/prefix/", AwsSection())
    return open_storage(str(tmp_path / "store"), AwsSection())


def test_put_get_exists_delete_roundtrip(store, tmp_path):
    assert not store.exists("a/b.txt")
    assert store.put_bytes("a/b.txt", b"hello") is True
    assert store.exists("a/b.txt")
    assert store.get_bytes("a/b.txt") == b"hello"
    store.delete("a/b.txt")
    assert not store.exists("a/b.txt")
    store.delete("a/b.txt")  # deleting a missing key is fine


def test_put_if_absent_refuses_to_overwrite(store):
    assert store.put_bytes("run/_SUCCESS", b"first", if_absent=True) is True
    assert store.put_bytes("run/_SUCCESS", b"second", if_absent=True) is False
    assert store.get_bytes("run/_SUCCESS") == b"first"
    assert store.put_bytes("run/_SUCCESS", b"third") is True  # unconditional overwrites
    assert store.get_bytes("run/_SUCCESS") == b"third"


def test_files_up_and_down(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    store.put_file("x/src.bin", src)
    dest = tmp_path / "down" / "copy.bin"
    store.get_file("x/src.bin", dest)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]  # no temp file left


def test_list_is_relative_sorted_and_filtered(store):
    for key, data in [("r1/b", b"22"), ("r1/a", b"1"), ("r2/c", b"333")]:
        store.put_bytes(key, data)
    assert list(store.list()) == [
        ObjectInfo("r1/a", 1),
        ObjectInfo("r1/b", 2),
        ObjectInfo("r2/c", 3),
    ]
    assert [o.key for o in store.list("r1/")] == ["r1/a", "r1/b"]
    assert list(store.list("nothing/")) == []


def test_missing_key_is_a_nosuchkey_storage_error(store):
    with pytest.raises(StorageError) as info:
        store.get_bytes("nope")
    assert info.value.code == "NoSuchKey"
    assert not is_transient(info.value)


def test_uri_names_the_full_location(s3, tmp_path):
    s3_store = open_storage("s3://b/p/q", AwsSection())
    assert s3_store.uri("r/_SUCCESS") == "s3://b/p/q/r/_SUCCESS"
    assert open_storage("s3://b", AwsSection()).uri("k") == "s3://b/k"
    local = open_storage(f"file://{tmp_path}/out", AwsSection())
    assert isinstance(local, LocalStorage)
    assert local.uri("r/x") == f"{tmp_path}/out/r/x"


def test_bad_uris_are_user_errors(tmp_path):
    for uri in ("s3:///prefix", "gs://bucket/x", ""):
        with pytest.raises(UserError):
            open_storage(uri, AwsSection())
    with pytest.raises(StorageError, match="leaves the storage directory"):
        LocalStorage(tmp_path).put_bytes("../escape", b"x")


def test_big_files_use_the_transfer_manager(s3, tmp_path):
    s3.client().create_bucket(Bucket=BUCKET)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))  # above the 8 MiB multipart threshold
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1024))
    store = open_storage(
        f"s3://{BUCKET}/p/", AwsSection(), transfer=TransferSettings(multipart_threshold_mb=8)
    )
    store.put_file("big.bin", big)
    store.put_file("small.bin", small)
    assert "-" not in s3.client().head_object(Bucket=BUCKET, Key="p/small.bin")["ETag"]
    head = s3.client().head_object(Bucket=BUCKET, Key="p/big.bin")
    assert head["ContentLength"] == big.stat().st_size
    assert "-" in head["ETag"]  # a multipart upload's ETag


def test_missing_bucket_is_one_clear_line(s3):
    store = open_storage("s3://no-such-bucket/x/", AwsSection())
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"x")
    text = str(info.value)
    assert text == "s3://no-such-bucket/x/k: put failed: bucket does not exist (NoSuchBucket)"
    assert info.value.code == "NoSuchBucket" and not is_transient(info.value)

    def command(argv):
        store.list()
        next(iter(store.list()))

    err = io.StringIO()
    with redirect_stderr(err):
        assert guarded_main(command, []) == 2
    assert err.getvalue().count("\n") == 1 and "NoSuchBucket" in err.getvalue()


def test_access_denied_is_permanent_and_named(s3):
    s3.client().create_bucket(Bucket=BUCKET)
    creds = user_with_policy(
        s3, "reader", [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]
    )
    s3.enforce_iam()
    store = S3Storage(s3.client(**creds), BUCKET, "p")
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"x")
    assert info.value.code == "AccessDenied"
    assert str(info.value) == "s3://bkt/p/k: put failed: access denied (AccessDenied)"
    assert not is_transient(info.value)


def test_client_honours_endpoint_setting_and_env(s3, monkeypatch):
    assert s3_client(AwsSection()).meta.endpoint_url == s3.endpoint  # AWS_ENDPOINT_URL
    explicit = s3_client(AwsSection(endpoint_url="http://127.0.0.1:9"))
    assert explicit.meta.endpoint_url == "http://127.0.0.1:9"
    assert explicit.meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert s3_client(AwsSection(), attempts=1).meta.config.retries["total_max_attempts"] == 1


@pytest.mark.parametrize("fault", ["503", "500", "reset"])
def test_transient_faults_classified_and_botocore_retries_pinned(s3, faulty_proxy, fault):
    s3.client().create_bucket(Bucket=BUCKET)
    aws = AwsSection(endpoint_url=faulty_proxy.endpoint)

    faulty_proxy.fail(fault, key_contains="/k1", times=1)
    single = open_storage(f"s3://{BUCKET}/", aws, attempts=1)
    with pytest.raises(StorageError) as info:
        single.put_bytes("k1", b"x")
    assert is_transient(info.value), info.value
    assert len([r for r in faulty_proxy.requests if r.path.endswith("/k1")]) == 1

    faulty_proxy.fail(fault, key_contains="/k2", times=2)
    three = open_storage(f"s3://{BUCKET}/", aws, attempts=3)
    assert three.put_bytes("k2", b"x") is True  # botocore's own 3 attempts absorb 2 faults
    seen = [r.fault for r in faulty_proxy.requests if r.path.endswith("/k2")]
    assert seen == [fault, fault, None]


def test_refused_connection_is_transient(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = open_storage("s3://b/", AwsSection(endpoint_url="http://127.0.0.1:9"), attempts=1)
    with pytest.raises(StorageError) as info:
        store.exists("k")
    assert is_transient(info.value)
