import datetime as dt

from decon.node.state import RUN_ID_RE, NodeState, Outcome, SpotNotice, make_run_id


def test_run_id_format():
    when = dt.datetime(2026, 11, 23, 14, 30, 12, tzinfo=dt.UTC)
    assert make_run_id("i-0abc", when) == "run-20261123-143012Z-i-0abc"
    assert RUN_ID_RE.match(make_run_id(None))


def test_start_run_persists_and_clears_previous(tmp_path):
    state = NodeState(tmp_path)
    assert state.run_id() is None
    state.write_outcome(Outcome.from_exit(1))
    state.write_notice(SpotNotice("terminate", "2026-11-23T14:32:00Z"))
    run_id = state.start_run("i-1")
    assert state.run_id() == run_id
    assert state.outcome() is None and state.notice() is None


def test_outcome_from_exit():
    assert Outcome.from_exit(0) == Outcome("normal", 0, "job exited 0")
    assert Outcome.from_exit(143).completion_status == "interrupted"
    assert Outcome.from_exit(-15).reason == "job killed by signal 15"


def test_notice_roundtrip(tmp_path):
    state = NodeState(tmp_path)
    state.write_notice(SpotNotice("stop", "2026-11-23T14:32:00Z"))
    notice = state.notice()
    assert notice == SpotNotice("stop", "2026-11-23T14:32:00Z")
    assert notice.when() == dt.datetime(2026, 11, 23, 14, 32, tzinfo=dt.UTC)


def test_progress_and_uploads(tmp_path):
    state = NodeState(tmp_path)
    state.write_progress({"assigned": 3, "done": 1})
    state.record_upload("s3://b/k1", 10, "aa")
    state.record_upload("s3://b/k2", 20, "bb")
    with (tmp_path / "uploads.jsonl").open("a") as fh:
        fh.write('{"uri": "torn')
    assert state.progress() == {"assigned": 3, "done": 1}
    assert [u["uri"] for u in state.uploads()] == ["s3://b/k1", "s3://b/k2"]
    state.start_run("i-1")
    assert state.progress() == {} and state.uploads() == []
