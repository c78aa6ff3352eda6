"""Access lines written by hand and held over a pass of the worker's loop (the speed layer).

``InfoLines`` writes the very line container/logs.py's JsonFormatter writes for
``logger.info(msg, extra=fields)`` (tests/unit/test_info_lines.py compares them), without logging's
machinery; with MLSHIP_FAST off, access lines go through logging itself (inference/exchange.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from container.logs import (
    _MILLIS,
    JsonFormatter,
    JsonLines,
    _payload,
    _Stamps,
    prediction_id_var,
    request_id_var,
)

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




# The access log's lines (inference/exchange.py names the logger), written by hand while the
# speed layer is on.
access_lines = InfoLines(logging.getLogger("inference.access"))
