"""Pure core of the job's planning: which input files exist, which belong to this host,
which are already done, and in what order to process them.

Sharding (SPEC section 4): a file belongs to host `int(md5(rel), 16) % host_count`, where `rel`
is the key relative to the input prefix (so the assignment does not depend on the bucket or on
where the prefix is mounted). Every host lists the whole input and keeps its share: the shards
partition the input exactly, with no coordination.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from decon.detect.io import is_data_file
from decon.detect.pipeline import output_names


@dataclass(frozen=True)
class InputFile:
    """One input object: its name relative to the input root, its size and where it lives."""

    rel: str
    size: int
    location: str  # s3://bucket/key or a local path


@dataclass(frozen=True)
class FilePlan:
    """One input file and the names of its outputs (relative to reports/ and cleaned/)."""

    input: InputFile
    report: str  # {basename}.report.jsonl
    marker: str  # {basename}.clean
    cleaned: str  # {basename}.clean.jsonl{ext}


@dataclass
class Plan:
    """This host's share of the input, split into files to do and files already done."""

    assigned: list[FilePlan]
    todo: list[FilePlan]
    done_contaminated: list[FilePlan]  # done before this run, with a report
    done_clean: list[FilePlan]  # done before this run, with a .clean marker
    collisions: list[tuple[FilePlan, str]]  # (file, the other input with the same basename)
    total_inputs: int
    shard_size: int = 0  # this host's files, before a debug limit cut `assigned` short


def is_input_name(rel: str) -> bool:
    """True for the input endings of SPEC section 10: .json/.jsonl, plain or compressed."""
    name = rel.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(".") and is_data_file(name)


def shard_of(rel: str, host_count: int) -> int:
    """The host index that owns `rel` (md5 of the relative key, modulo the host count)."""
    return int(hashlib.md5(rel.encode("utf-8")).hexdigest(), 16) % host_count


def file_plan(item: InputFile) -> FilePlan:
    names = output_names(item.rel)
    return FilePlan(item, names.report, names.clean_marker, names.cleaned)


def make_plan(
    inputs: Iterable[InputFile],
    host_index: int,
    host_count: int,
    done_keys: set[str],
    limit: int | None = None,
) -> Plan:
    """Shard, skip done files, order largest first (ties by name), apply the debug limit.

    `done_keys` are the keys present under the reports prefix (relative to it). With `limit`
    (MAX_FILES_DEBUG) only the first `limit` files still to do are assigned.
    """
    every = sorted((i for i in inputs if is_input_name(i.rel)), key=lambda i: i.rel)
    first_by_base: dict[str, str] = {}
    collisions_all: dict[str, str] = {}
    for item in every:
        base = output_names(item.rel).basename
        if base in first_by_base:
            collisions_all[item.rel] = first_by_base[base]
        else:
            first_by_base[base] = item.rel
    mine = [file_plan(i) for i in every if shard_of(i.rel, host_count) == host_index]
    mine.sort(key=lambda p: (-p.input.size, p.input.rel))
    plan = Plan([], [], [], [], [], total_inputs=len(every), shard_size=len(mine))
    for fp in mine:
        if fp.report in done_keys:
            plan.done_contaminated.append(fp)
        elif fp.marker in done_keys:
            plan.done_clean.append(fp)
        elif fp.input.rel in collisions_all:
            plan.collisions.append((fp, collisions_all[fp.input.rel]))
        else:
            plan.todo.append(fp)
    if limit is not None:
        plan.todo = plan.todo[:limit]
        plan.assigned = list(plan.todo)
        plan.done_contaminated, plan.done_clean, plan.collisions = [], [], []
    else:
        plan.assigned = mine
    return plan
