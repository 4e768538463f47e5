"""Planning: input names, sharding, skip-done, order, debug limit."""

from __future__ import annotations

import hashlib

import pytest

from decon.config import config_from_dict
from decon.jobrun.endpoints import JobStorage, S3Source
from decon.jobrun.inputs import InputFile, is_input_name, make_plan, shard_of
from fakes.jobrun_world import IN_BUCKET, IN_PREFIX, put_shards


@pytest.mark.parametrize(
    "name",
    [
        "a.jsonl",
        "a.json",
        "d/a.jsonl.gz",
        "a.jsonl.zst",
        "a.jsonl.zstd",
        "a.json.bz2",
        "x/y/a.jsonl.xz",
    ],
)
def test_input_endings_are_accepted(name: str) -> None:
    assert is_input_name(name)


@pytest.mark.parametrize(
    "name", ["a.txt", "a.jsonl.tar", "_SUCCESS", "dir/", "a.gz", ".hidden.jsonl", "a.parquet"]
)
def test_other_names_are_not_inputs(name: str) -> None:
    assert not is_input_name(name)


def test_shard_is_md5_of_relative_key() -> None:
    rel = "part-1/shard-0003.jsonl.gz"
    assert shard_of(rel, 7) == int(hashlib.md5(rel.encode()).hexdigest(), 16) % 7
    assert shard_of(rel, 1) == 0


def files(n: int) -> list[InputFile]:
    return [
        InputFile(f"f{i}.jsonl", size=(i * 37) % 11, location=f"s3://b/p/f{i}.jsonl")
        for i in range(n)
    ]


def test_plan_orders_largest_first_then_name() -> None:
    plan = make_plan(files(30), 0, 1, set())
    order = [(-fp.input.size, fp.input.rel) for fp in plan.todo]
    assert order == sorted(order)
    assert len(plan.todo) == 30


def test_plan_skips_reports_and_markers_and_counts_them() -> None:
    done = {"f1.report.jsonl", "f2.clean", "f3.clean.jsonl"}  # the last is a cleaned name: no
    plan = make_plan(files(5), 0, 1, done)
    assert [fp.input.rel for fp in plan.done_contaminated] == ["f1.jsonl"]
    assert [fp.input.rel for fp in plan.done_clean] == ["f2.jsonl"]
    assert sorted(fp.input.rel for fp in plan.todo) == ["f0.jsonl", "f3.jsonl", "f4.jsonl"]
    assert len(plan.assigned) == 5


def test_plan_names_follow_spec_section_6() -> None:
    plan = make_plan([InputFile("a/b/x.jsonl.zst", 1, "s3://b/p/a/b/x.jsonl.zst")], 0, 1, set())
    (fp,) = plan.todo
    assert (fp.report, fp.marker, fp.cleaned) == (
        "a/b/x.report.jsonl",
        "a/b/x.clean",
        "a/b/x.clean.jsonl.zst",
    )


def test_plan_fails_basename_collisions_instead_of_overwriting() -> None:
    inputs = [InputFile("x.jsonl", 1, "1"), InputFile("x.jsonl.gz", 1, "2")]
    plan = make_plan(inputs, 0, 1, set())
    assert [fp.input.rel for fp in plan.todo] == ["x.jsonl"]
    assert [(fp.input.rel, other) for fp, other in plan.collisions] == [("x.jsonl.gz", "x.jsonl")]


def test_debug_limit_takes_the_first_n_to_do() -> None:
    plan = make_plan(files(10), 0, 1, {"f9.clean"}, limit=3)
    assert len(plan.todo) == len(plan.assigned) == 3
    assert "f9.jsonl" not in [fp.input.rel for fp in plan.todo]


def test_sharding_partitions_the_s3_input_exactly(s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    truth = put_shards(s3.client(), 60, lines=1)
    s3.client().put_object(Bucket=IN_BUCKET, Key=IN_PREFIX + "README.txt", Body=b"not input")
    cfg = config_from_dict(
        {"input": {"uri": f"s3://{IN_BUCKET}/{IN_PREFIX}"}}, env={"AWS_ENDPOINT_URL": s3.endpoint}
    )
    listed = S3Source(cfg.input.uri, JobStorage.for_job(cfg.run, cfg.aws)).list()
    assert {i.rel for i in listed} == set(truth) | {"README.txt"}
    for count in (1, 2, 3, 5, 8):
        owners: dict[str, list[int]] = {}
        for index in range(count):
            for fp in make_plan(listed, index, count, set()).assigned:
                owners.setdefault(fp.input.rel, []).append(index)
        assert set(owners) == set(truth), count
        assert all(len(v) == 1 for v in owners.values()), count
        if count > 1:
            assert len({v[0] for v in owners.values()}) > 1  # not everything on one host
