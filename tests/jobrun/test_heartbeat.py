import datetime as dt

import pytest

from decon.jobrun.heartbeat import FileCounts, HeartbeatRecord


def test_roundtrip_and_age():
    beat = HeartbeatRecord(
        "run-1",
        "job",
        "i-1",
        2,
        4,
        "2026-11-23T14:30:12Z",
        files=FileCounts(assigned=10, done=3, contaminated=1),
    )
    again = HeartbeatRecord.from_json(beat.to_json())
    assert again == beat and again.files.done == 3
    now = dt.datetime(2026, 11, 23, 14, 31, 12, tzinfo=dt.UTC)
    assert again.age_seconds(now) == 60


@pytest.mark.parametrize("text", ["{", "[]", '{"run_id": "x"}', '{"files": {"nope": 1}}'])
def test_malformed_heartbeat_is_a_value_error(text):
    with pytest.raises(ValueError):
        HeartbeatRecord.from_json(text)
