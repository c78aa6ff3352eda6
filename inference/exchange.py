"""The pieces of one request and its answer that every door shares, Flask's routes and the speed
layer's (inference/fast) alike: the request id, the error body, the body limit, and what an
answered request leaves behind (its samples and its access line).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.utils import get_content_type

from container.settings import Settings
from inference import metrics
from inference.errors import PayloadTooLarge, ServiceError

log = logging.getLogger("inference.app")
access = logging.getLogger("inference.access")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
ENABLE_EXPLANATIONS = "X-Amzn-SageMaker-Enable-Explanations"  # Clarify's, README Explanations
REQUEST_ID_HEADERS = ("X-Amzn-SageMaker-Inference-Id", "X-Request-Id")
DISCARD_LIMIT = 256 * 1024 * 1024  # a client sending more than this before reading gets a reset
HEALTHY = b'{"status":"healthy"}'


def _log_access(msg: str, fields: dict[str, Any], seconds: float) -> None:
    """The access line through logging (container/logs.py's JsonFormatter writes it)."""
    if access.isEnabledFor(logging.INFO):
        access.info(msg, extra={**fields, "ms": round(seconds * 1000, 3)})


# Who writes access lines: logging, unless the speed layer installs its own writer of the same line.
AccessWriter = Callable[[str, dict[str, Any], float], None]
_access: list[AccessWriter] = [_log_access]


def write_access_lines_with(writer: AccessWriter) -> None:
    _access[0] = writer


def request_id(given: Iterable[str | None]) -> str:
    """The first request id the client sent (SageMaker's inference id, X-Request-Id), else a new one."""
    return (next((v for v in given if v), None) or uuid.uuid4().hex)[:128]


def finished(route: str, method: str, path: str, status: int, version: str, seconds: float) -> None:
    """What every answered request leaves behind: its samples, and an access line (not for /ping)."""
    metrics.request_done(route, method, status, version, seconds)
    if path != "/ping":
        _access[0](f"{method} {path} {status}", {"status": status}, seconds)


def error_parts(exc: ServiceError, rid: str | None) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers of an error, as every route answers it."""
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return exc.status, json.dumps(exc.body(rid)).encode(), exc.headers


def too_large(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body exceeds {settings.max_payload_mb:g} MB; raise "
                           "SAGEMAKER_MAX_PAYLOAD_IN_MB (up to 100) or send smaller batches")


def discard_body(stream: Any, length: int | None) -> None:
    """Read what the client is still sending before answering 413: a client that writes its whole
    body before reading (Python's urllib, many SDKs) would otherwise see a broken pipe, not the JSON."""
    if stream is None or length is None or length > DISCARD_LIMIT:
        return
    left = length
    try:
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:  # the client gave up: nothing more to do for it
        return


@lru_cache(maxsize=64)
def status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"  # werkzeug's spelling


@lru_cache(maxsize=64)
def content_type(media_type: str) -> str:
    return get_content_type(media_type, "utf-8")  # Flask's: text types gain a charset
