import io
import re

from decon.eventlog import EventLog, format_fields

LINE = re.compile(r"^\[UTC \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] STATE: FINALIZE_START (.*)$")


def test_event_goes_to_file_and_stream(tmp_path):
    stream = io.StringIO()
    log = EventLog(tmp_path / "log" / "decon-run.log", stream)
    log.event("FINALIZE_START", run_id="run-1", completion_status="normal", exit_code=0)
    file_line = (tmp_path / "log" / "decon-run.log").read_text().splitlines()
    assert file_line == stream.getvalue().splitlines()
    match = LINE.match(file_line[0])
    assert match and match.group(1) == "run_id=run-1 completion_status=normal exit_code=0"


def test_values_with_spaces_are_quoted_and_none_dropped():
    assert format_fields({"reason": 'job "x" exited 1', "n": None, "e": ""}) == (
        'reason="job \\"x\\" exited 1" e=""'
    )
