"""container.logs.JsonLines: what is printed around the logging system still becomes JSON lines."""

from __future__ import annotations

import io
import json
import traceback

from container.logs import JsonLines


def test_json_lines_pass_and_everything_else_is_wrapped() -> None:
    out = io.StringIO()
    stream = JsonLines(out, "stderr", "ERROR")
    already = json.dumps({"ts": "t", "level": "INFO", "logger": "gunicorn.error", "msg": "Booting worker"})
    print(already, file=stream)
    # What gunicorn prints itself: Arbiter.spawn_worker after a boot failure, BaseApplication.run.
    print("%s" % RuntimeError("store unreachable"), file=stream)  # noqa: UP031 - gunicorn's own words
    print("\nError: %s\n" % "No application module specified.", file=stream)  # noqa: UP031
    try:
        raise ValueError("boom")
    except ValueError:
        traceback.print_exc(file=stream)
    stream.write("a line in ")
    stream.write("two writes\nand a last one without newline")
    stream.flush()
    lines = out.getvalue().splitlines()
    assert lines[0] == already
    records = [json.loads(line) for line in lines]  # every line is JSON
    msgs = [r["msg"] for r in records[1:]]
    assert msgs[:2] == ["store unreachable", "Error: No application module specified."]
    assert msgs[2] == "Traceback (most recent call last):" and msgs[-3] == "ValueError: boom"
    assert msgs[-2:] == ["a line in two writes", "and a last one without newline"]
    assert all(r["logger"] == "stderr" and r["level"] == "ERROR" and r["ts"].endswith("Z") for r in records[1:])
