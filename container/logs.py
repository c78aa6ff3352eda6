"""JSON-lines logging with the request id (and prediction id) of the work in hand.

Configured once per process. Context ids travel in contextvars so that any module can
log without passing them around, and every line a request causes carries its id.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
prediction_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "prediction_id", default=None
)

_RESERVED = set(vars(logging.makeLogRecord({})))


class _Stamps:
    """``2026-12-02T06:00:00.123Z``: the seconds formatted once a second, not once a line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._prefix + _MILLIS[min(int(msecs), 999)]  # a product that rounds up to 1000


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]
_THOUSANDTHS = [("." + f"{n:03d}".rstrip("0")) if n else ".0" for n in range(1000)]


def millis_text(seconds: float) -> str:
    """``repr(round(seconds * 1000, 3))`` in a third of its time (both a float's round() and its
    repr() run the long decimal conversion): the microseconds as an integer, written as
    milliseconds. A value within a rounding error of a half microsecond, negative or huge takes
    round() and repr() themselves, so the text is theirs in every case."""
    micros = seconds * 1000 * 1000
    if not 0 <= micros < 1e12:  # NaN too
        return repr(round(seconds * 1000, 3))
    whole = int(micros)
    part = micros - whole
    if 0.4999 < part < 0.5001:
        return repr(round(seconds * 1000, 3))
    whole += part > 0.5
    return str(whole // 1000) + _THOUSANDTHS[whole % 1000]


def _payload(stamp: str, level: str, name: str, msg: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"ts": stamp, "level": level, "logger": name, "msg": msg}
    rid = request_id_var.get()
    if rid:
        payload["request_id"] = rid
    pid = prediction_id_var.get()
    if pid:
        payload["prediction_id"] = pid
    return payload


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamp = _Stamps()

    def format(self, record: logging.LogRecord) -> str:
        payload = _payload(self._stamp(record.created, record.msecs), record.levelname, record.name,
                           record.getMessage())
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes strings with (C)


def flat_json(payload: dict[str, Any]) -> str:
    """``json.dumps(payload, default=str, ensure_ascii=False)`` of a flat object of strings,
    ints and finite floats, in a third of the time (no encoder object, no generator); any other
    value takes json.dumps itself."""
    parts = []
    for key, value in payload.items():
        kind = type(value)
        if kind is str:
            text = _quote(value)
        elif kind is int or (kind is float and math.isfinite(value)):
            text = repr(value)  # the spelling json.dumps writes for an int and a float
        else:
            return json.dumps(payload, default=str, ensure_ascii=False)
        parts.append(f"{_quote(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


class InfoLines:
    """A logger's INFO lines with a few fields, written as JsonFormatter writes them but without
    logging's machinery (record, caller lookup, handler chain: about 30 us a line, most of a
    one-row prediction's cost when each request writes an access line).

    Taken only when the line would reach exactly one handler, a plain StreamHandler with a
    JsonFormatter and no filters (what ``configure`` and `serve` set up); otherwise, or when the
    write fails, the line goes through ``logger.info`` as usual.

    Inside ``held()`` the lines the holding thread writes wait and go out together in one write
    when it ends: the serving worker holds them over each pass of its event loop, so the several
    requests one pass answers cost one system call for their access lines, not one each (the
    write was half a one-row prediction's cost). A line waits at most as long as that pass.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._stamp = _Stamps()
        # What every line of this logger starts with after its time stamp.
        self._head = f'", "level": "INFO", "logger": {_quote(logger.name)}, "msg": '
        self._heads: dict[str, str] = {}  # msg -> what its line holds from the level to the msg
        # (line, msg, fields, the "ms" field's text that timed() adds to them, or None)
        self._held: list[tuple[str, str, dict[str, Any], str | None]] | None = None
        self._holder = 0  # the thread whose lines are held
        self._hold_handler: logging.StreamHandler[Any] | None = None  # timed()'s, in this hold
        self._hold_resolved = False  # whether _hold_handler was looked up in this hold
        self._timed: dict[str, tuple[str, str] | tuple[()]] = {}  # msg -> timed()'s fixed text

    def _handler(self) -> logging.StreamHandler[Any] | None:
        found: list[logging.Handler] = []
        logger: logging.Logger | None = self.logger
        while logger is not None:
            if logger.filters:
                return None
            found += logger.handlers
            logger = logger.parent if logger.propagate else None
        if len(found) != 1:
            return None
        handler = found[0]
        if (type(handler) is not logging.StreamHandler or handler.filters or handler.level > logging.INFO
                or not isinstance(handler.formatter, JsonFormatter)):
            return None
        return handler

    def line(self, msg: str, fields: dict[str, Any], now: float) -> str:
        """The JSON line JsonFormatter writes for ``logger.info(msg, extra=fields)`` at ``now``
        (a field named like a key the formatter sets is dropped, as the formatter drops it)."""
        head = self._heads.get(msg)
        if head is None:  # the messages are few (an access line's method, path and status)
            head = self._head + _quote(msg)
            if len(self._heads) < 1024:
                self._heads[msg] = head
        stamp = self._stamp(now, (now - int(now)) * 1000)
        text = '{"ts": "' + stamp + head
        rid, pid = request_id_var.get(), prediction_id_var.get()
        if rid:
            text += ', "request_id": ' + _quote(rid)
        if pid:
            text += ', "prediction_id": ' + _quote(pid)
        for key, value in fields.items():
            kind = type(value)
            if kind is int or (kind is float and math.isfinite(value)):
                shown = repr(value)  # the spelling json.dumps writes for an int and a float
            elif kind is str:
                shown = _quote(value)
            else:
                return self._general(msg, fields, stamp)
            if key in _LINE_KEYS or (key == "request_id" and rid) or (key == "prediction_id" and pid):
                continue
            named = _KEYS.get(key)
            if named is None:
                named = ", " + _quote(key) + ": "
                if len(_KEYS) < 1024:
                    _KEYS[key] = named
            text += named + shown
        return text + "}"

    def _general(self, msg: str, fields: dict[str, Any], stamp: str) -> str:
        payload = _payload(stamp, "INFO", self.logger.name, msg)
        for key, value in fields.items():
            payload.setdefault(key, value)
        return flat_json(payload)

    def timed(self, msg: str, fields: dict[str, Any], seconds: float) -> None:
        """``info(msg, {**fields, "ms": round(seconds * 1000, 3)})`` for a ``msg`` that always comes
        with the same ``fields`` (an access line: its status is in its msg). While held, the line's
        text from the level to the msg and that of the fields are built once per msg, and what
        changes from line to line (time stamp, ids, milliseconds) goes in with one format: a
        fifth of ``info``'s cost, which was a third of a one-row prediction's Python."""
        held = self._held
        if held is None or threading.get_ident() != self._holder:
            self.info(msg, {**fields, "ms": round(seconds * 1000, 3)})
            return
        if not self._hold_resolved:  # once a pass: logging's set-up does not change within one
            self._hold_handler = self._handler() if self.logger.isEnabledFor(logging.INFO) else None
            self._hold_resolved = True
        handler = self._hold_handler
        parts = self._timed.get(msg)
        if parts is None:
            parts = self._timed_parts(msg, fields)
        if handler is None or not parts:
            self.info(msg, {**fields, "ms": round(seconds * 1000, 3)})
            return
        ms = millis_text(seconds)
        now = time.time()
        second = int(now)
        stamps = self._stamp
        if second != stamps._second:
            stamps(now, 0.0)
        rid, pid = request_id_var.get(), prediction_id_var.get()
        ids = ', "request_id": ' + _quote(rid) if rid else ""
        if pid:
            ids += ', "prediction_id": ' + _quote(pid)
        held.append((f'{{"ts": "{stamps._prefix}{_MILLIS[min(int((now - second) * 1000), 999)]}{parts[0]}'
                     f'{ids}{parts[1]}{ms}}}{handler.terminator}', msg, fields, ms))

    def _timed_parts(self, msg: str, fields: dict[str, Any]) -> tuple[str, str] | tuple[()]:
        """The fixed text of ``timed``'s line for ``msg`` (from the level to the msg; the fields up to
        the milliseconds), or () where ``line`` must build it (a key the line sets itself, a value
        that is not a plain string or number)."""
        parts: tuple[str, str] | tuple[()] = ()
        text = ""
        for key, value in fields.items():
            kind = type(value)
            if key in _LINE_KEYS or key in _TIMED_KEYS or \
                    not (kind is str or kind is int or (kind is float and math.isfinite(value))):
                break
            text += ", " + _quote(key) + ": " + (_quote(value) if kind is str else repr(value))
        else:
            parts = (self._head + _quote(msg), text + ', "ms": ')
        if len(self._timed) < 1024:  # the msgs are few (method, path and status)
            self._timed[msg] = parts
        return parts

    def info(self, msg: str, fields: dict[str, Any]) -> None:
        """``logger.info(msg, extra=fields)`` for a ``msg`` without %-arguments."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        handler = self._handler()
        if handler is not None:
            line = self.line(msg, fields, time.time()) + handler.terminator
            held = self._held
            if held is not None and threading.get_ident() == self._holder:
                held.append((line, msg, fields, None))
                return
            if self._write(handler, line):
                return
        self.logger.info("%s", msg, extra=fields)

    def _write(self, handler: logging.StreamHandler[Any], text: str) -> bool:
        try:
            stream = handler.stream
            with handler.lock or _NO_LOCK:
                if type(stream) is JsonLines:
                    stream.write_lines(text)  # which flushes them itself
                else:
                    stream.write(text)
                    stream.flush()
            return True
        except Exception:
            return False  # the caller sends the lines through logging, whose own path reports it

    def hold(self) -> bool:
        """Hold the lines this thread writes until ``release``; False (nothing held) when they
        are held already, by this thread or another. ``held()`` is the block form."""
        if self._held is not None:
            return False
        self._held, self._holder = [], threading.get_ident()
        self._hold_resolved = False
        return True

    def release(self) -> None:
        """Write the held lines at once (through logging, should the fast path no longer apply)."""
        held, self._held = self._held, None
        if held:
            handler = self._handler()
            if handler is None or not self._write(handler, "".join([line for line, _, _, _ in held])):
                for _, msg, fields, ms in held:
                    self.logger.info("%s", msg, extra=fields if ms is None else {**fields, "ms": float(ms)})

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if not self.hold():
            yield
            return
        try:
            yield
        finally:
            self.release()


_LINE_KEYS = frozenset(("ts", "level", "logger", "msg"))
_TIMED_KEYS = frozenset(("request_id", "prediction_id", "ms"))
_KEYS: dict[str, str] = {}  # field name -> ', "name": '
_NO_LOCK = threading.Lock()


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Route the root logger to JSON lines on stderr (or ``stream``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that would drown the job's own lines.
    for noisy in ("urllib3", "botocore", "matplotlib", "PIL", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class JsonLines(io.TextIOBase):
    """A text stream that passes JSON lines through and wraps every other line into one.

    `serve` puts one on stdout and stderr before anything else runs, so what libraries print
    around the logging system (gunicorn's "Error: ..." and worker-boot messages, warnings, an
    uncaught traceback) still reaches the log collector as JSON lines: one per printed line.
    Writes at the file-descriptor level (a C library's own output) do not pass through here.
    """

    def __init__(self, target: Any, stream: str, level: str) -> None:
        self._target = target
        self._stream = stream
        self._level = level
        self._pending = ""
        self._lock = threading.Lock()
        # A fork while another thread holds the lock would leave the child's copy held for ever.
        os.register_at_fork(after_in_child=self._reset_lock)

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._target, "encoding", "utf-8"))

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self._target.fileno())

    def write(self, text: str) -> int:
        with self._lock:
            if not self._pending and text.startswith("{") and text.find("\n") == len(text) - 1 \
                    and text.endswith("}\n"):
                self._target.write(text)  # one JSON line, the usual case: nothing to wrap
                self._target.flush()
                return len(text)
            self._pending += text
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                self._emit(line)
        return len(text)

    def write_lines(self, text: str) -> None:
        """Write complete JSON lines (InfoLines builds them) in one write."""
        with self._lock:
            if not self._pending:
                self._target.write(text)
                self._target.flush()
                return
        self.write(text)  # after a partial line printed before: the order kept, line by line

    def _emit(self, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            return
        if not (stripped.startswith("{") and stripped.endswith("}")):
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
            record = {"ts": stamp, "level": self._level, "logger": self._stream, "msg": line.rstrip()}
            line = json.dumps(record, ensure_ascii=False)
        self._target.write(line + "\n")
        self._target.flush()

    def flush(self) -> None:
        with self._lock:
            if self._pending.strip():
                self._emit(self._pending)
            self._pending = ""
        self._target.flush()


def json_stdio() -> None:
    """Make every line this process (and its forks) prints on stdout and stderr a JSON line."""
    if sys.__stdout__ is not None and not isinstance(sys.stdout, JsonLines):
        sys.stdout = JsonLines(sys.__stdout__, "stdout", "INFO")
    if sys.__stderr__ is not None and not isinstance(sys.stderr, JsonLines):
        sys.stderr = JsonLines(sys.__stderr__, "stderr", "ERROR")
