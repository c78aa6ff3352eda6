"""JSON-lines logging with the request id (and prediction id) of the work in hand.

Configured once per process. Context ids travel in contextvars so that any module can
log without passing them around, and every line a request causes carries its id.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import sys
import threading
import time
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
