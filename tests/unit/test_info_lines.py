"""inference.fast.lines.InfoLines: the access line written without logging's machinery is the line
logging writes, and any set-up it cannot vouch for gets logging's own path."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import threading
from collections.abc import Iterator

import pytest

from container import logs
from inference.fast import lines as lines_module


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("INFO", out)
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_line_is_the_one_logging_writes_but_for_the_time(stream: io.StringIO) -> None:
    log = logging.getLogger("test.access")
    token = logs.request_id_var.set("rid-1")
    try:
        lines_module.InfoLines(log).info("POST /invocations 200", {"status": 200, "ms": 0.125})
        log.info("%s %s %d", "POST", "/invocations", 200, extra={"status": 200, "ms": 0.125})
    finally:
        logs.request_id_var.reset(token)
    fast, slow = _lines(stream)
    assert list(fast) == list(slow) == ["ts", "level", "logger", "msg", "request_id", "status", "ms"]
    assert {**fast, "ts": ""} == {**slow, "ts": ""}
    assert str(fast["ts"]).endswith("Z") and str(fast["ts"])[:19] == str(slow["ts"])[:19]


@pytest.mark.parametrize("rid", [None, "rid-\"2\""])
@pytest.mark.parametrize("pid", [None, "pred-é"])
@pytest.mark.parametrize("fields", [
    {}, {"status": 200, "ms": 0.1 + 0.2}, {"note": 'a "quoted" \\ \n text \u2028 漢', "n": -7},
    {"msg": "not kept", "ts": 1, "level": 2, "logger": 3, "request_id": "kept only without one",
     "prediction_id": "likewise", "_private": 1},
    {"nan": float("nan")}, {"flag": True, "none": None, "list": [1, 2]},
])
def test_the_built_line_is_what_the_payload_gives(rid: str | None, pid: str | None,
                                                   fields: dict[str, object]) -> None:
    lines = lines_module.InfoLines(logging.getLogger("test.built"))
    tokens = logs.request_id_var.set(rid), logs.prediction_id_var.set(pid)
    try:
        now = 1_700_000_000.25
        built = lines.line("GET /x 200", fields, now)
        payload = logs._payload(logs._Stamps()(now, 250.0), "INFO", "test.built", "GET /x 200")
        for key, value in fields.items():
            payload.setdefault(key, value)
    finally:
        logs.request_id_var.reset(tokens[0])
        logs.prediction_id_var.reset(tokens[1])
    assert built == json.dumps(payload, default=str, ensure_ascii=False)


def test_a_filter_or_a_second_handler_gets_loggings_own_path(stream: io.StringIO) -> None:
    log = logging.getLogger("test.filtered")
    lines = lines_module.InfoLines(log)
    log.addFilter(lambda record: False)
    lines.info("dropped by the filter", {})
    log.filters.clear()
    extra = io.StringIO()
    handler = logging.StreamHandler(extra)
    log.addHandler(handler)
    try:
        lines.info("to both", {"n": 1})
    finally:
        log.removeHandler(handler)
    assert [x["msg"] for x in _lines(stream)] == ["to both"] and extra.getvalue() == "to both\n"


def test_below_info_nothing_is_written(stream: io.StringIO) -> None:
    log = logging.getLogger("test.quiet")
    log.setLevel(logging.WARNING)
    lines_module.InfoLines(log).info("not written", {})
    assert stream.getvalue() == ""


def test_json_lines_passes_one_json_line_and_wraps_a_brace_that_is_not_one() -> None:
    out = io.StringIO()
    stdio = logs.JsonLines(out, "stderr", "ERROR")
    stdio.write('{"msg": "as is"}\n')
    stdio.write("{not json\n")
    first, second = out.getvalue().splitlines()
    assert first == '{"msg": "as is"}' and json.loads(second)["msg"] == "{not json"


def test_flat_json_is_json_dumps_for_every_value_kind() -> None:
    cases = [{"msg": 'quote " backslash \\ newline \n control \x01 line sep \u2028 é ü 漢', "n": -3,
              "ms": 0.1 + 0.2, "tiny": 5e-324, "big": 10**30, "zero": -0.0},
             {"nan": float("nan")}, {"inf": float("inf")}, {"flag": True}, {"none": None},
             {"list": [1, 2]}, {"key \"quoted\"": "v"}, {}]
    for payload in cases:
        assert lines_module.flat_json(payload) == json.dumps(payload, default=str, ensure_ascii=False)


class _CountingTarget(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_held_lines_wait_for_the_end_of_the_block_and_go_out_in_one_write() -> None:
    target = _CountingTarget()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO", logs.JsonLines(target, "stderr", "ERROR"))
    log = logging.getLogger("test.held")
    lines = lines_module.InfoLines(log)
    try:
        with lines.held():
            for n in range(3):
                lines.info(f"line {n}", {"n": n})
            assert target.getvalue() == ""  # nothing yet
            with lines.held():  # nested: the outer block still holds
                lines.info("line 3", {"n": 3})
            assert target.getvalue() == ""
            other = threading.Thread(target=lines.info, args=("from another thread", {}))
            other.start()
            other.join()
            assert [x["msg"] for x in _lines(target)] == ["from another thread"]  # not held
        assert target.writes == 2
        assert [x["msg"] for x in _lines(target)] == ["from another thread", "line 0", "line 1", "line 2",
                                                        "line 3"]
        lines.info("after the block", {})
        assert target.writes == 3
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_held_lines_after_a_partial_line_come_out_as_a_plain_write_gives_them() -> None:
    text = '{"msg": "a"}\n{"msg": "b"}\n'
    outs = io.StringIO(), io.StringIO()
    held, plain = logs.JsonLines(outs[0], "stderr", "ERROR"), logs.JsonLines(outs[1], "stderr", "ERROR")
    for stdio in (held, plain):
        stdio.write("half a line, ")
    held.write_lines(text)
    plain.write(text)
    assert outs[0].getvalue() == outs[1].getvalue() and outs[0].getvalue().count("\n") == 2


def test_held_lines_take_loggings_path_when_the_handler_changed_meanwhile() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out, extra = io.StringIO(), io.StringIO()
    logs.configure("INFO", out)  # here, not in a fixture: pytest adds its own handlers to the root
    log = logging.getLogger("test.changed")
    lines = lines_module.InfoLines(log)
    handler = logging.StreamHandler(extra)
    try:
        with lines.held():
            lines.info("held", {"n": 1})
            lines.timed("timed", {"n": 2}, 0.0012344)
            assert out.getvalue() == ""
            log.addHandler(handler)  # now two handlers: the fast path cannot vouch for the lines
    finally:
        log.removeHandler(handler)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    written = _lines(out)
    assert [x["msg"] for x in written] == ["held", "timed"] and extra.getvalue() == "held\ntimed\n"
    assert written[1]["n"] == 2 and written[1]["ms"] == 1.234


@pytest.mark.parametrize("rid", [None, "rid-\"3\""])
@pytest.mark.parametrize("pid", [None, "pred-é"])
@pytest.mark.parametrize("held", [True, False])
@pytest.mark.parametrize("fields", [{"status": 200}, {"note": 'a "quoted" \u2028 漢', "n": -7}, {},
                                    {"ms": 5.0}, {"request_id": "x"}, {"level": 1}, {"obj": [1]}])
def test_a_timed_line_is_the_info_line_with_its_milliseconds(
        stream: io.StringIO, rid: str | None, pid: str | None, held: bool, fields: dict[str, object]) -> None:
    log = logging.getLogger("test.timed")
    lines = lines_module.InfoLines(log)
    tokens = logs.request_id_var.set(rid), logs.prediction_id_var.set(pid)
    try:
        with lines.held() if held else contextlib.nullcontext():
            for seconds in (0.000123456, 0.0025, 1.5, 1234.5678904):
                lines.timed("POST /invocations 200", fields, seconds)  # the same msg: its text kept
                lines.info("POST /invocations 200", {**fields, "ms": round(seconds * 1000, 3)})
    finally:
        logs.request_id_var.reset(tokens[0])
        logs.prediction_id_var.reset(tokens[1])
    written = stream.getvalue().split("\n")[:-1]  # not splitlines(): a field may hold U+2028
    assert len(written) == 8
    for timed, info in zip(written[::2], written[1::2], strict=True):
        assert timed[:26] == info[:26] and timed[31:] == info[31:]  # all but the stamp's milliseconds
        assert json.loads(timed)["ms"] == json.loads(info)["ms"]


def test_a_timed_line_below_info_is_not_written(stream: io.StringIO) -> None:
    log = logging.getLogger("test.timed.quiet")
    log.setLevel(logging.WARNING)
    lines = lines_module.InfoLines(log)
    with lines.held():
        lines.timed("not written", {"status": 200}, 0.001)
    assert stream.getvalue() == ""


def test_millis_text_is_the_repr_of_the_rounded_milliseconds() -> None:
    rng = random.Random(4)
    values = [0.0, 1e-9, 5e-7, 4.999999e-7, 5.000001e-7, 0.001, 0.0015, 0.0025, 1.0, 59.9999995, 1e5, 1e6, 2e6,
              -0.001, float("inf"), float("nan")]
    for scale in (1e-6, 1e-4, 1e-2, 1.0, 100.0, 1e5):
        values += [rng.random() * scale for _ in range(3000)]
        # within a rounding error of a half microsecond: the text is still round()'s
        values += [(rng.randrange(10**6) + 0.5) * scale / 1e6 * (1 + rng.uniform(-1e-12, 1e-12)) for _ in range(300)]
    for seconds in values:
        expected = repr(round(seconds * 1000, 3))
        assert lines_module.millis_text(seconds) == expected, seconds
