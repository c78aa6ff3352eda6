"""JSON-lines logging with the request id (and prediction id) of the work in hand.

Configured once per process. Context ids travel in contextvars so that any module can
log without passing them around, and every line a request causes carries its id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
prediction_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "prediction_id", default=None
)

_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            payload["request_id"] = rid
        pid = prediction_id_var.get()
        if pid:
            payload["prediction_id"] = pid
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
