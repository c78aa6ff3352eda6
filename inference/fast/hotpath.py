"""GET /ping and POST /invocations answered in plain WSGI, ahead of Flask.

These two requests are nearly all of an endpoint's traffic, and for a one-row prediction
Flask's request context, URL matching and response object cost more than decoding, scoring
and encoding the row. ``HotPath`` wraps the Flask app's WSGI callable and answers exactly these
two requests itself, through the same data plane, error tree, request ids, metrics and access
log as every other route (inference/exchange.py holds those shared pieces). Anything else (other
methods on these paths, a body without Content-Length) goes to Flask unchanged, and Flask keeps its
own /ping and /invocations routes for those (and for every request with MLSHIP_FAST off).
tests/service/test_hotpath.py sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from container.logs import request_id_var
from container.settings import Settings
from inference.dataplane import DataPlane, Invocation
from inference.errors import ServiceError
from inference.exchange import (
    CUSTOM_ATTRIBUTES,
    ENABLE_EXPLANATIONS,
    HEALTHY,
    REQUEST_ID_HEADERS,
    TARGET_MODEL,
    content_type,
    discard_body,
    error_parts,
    finished,
    request_id,
    status_line,
    too_large,
)
from inference.registry import ModelRegistry

log = logging.getLogger("inference.app")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = tuple[int, bytes, str, str]  # status, body, media type, model version


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_REQUEST_ID_KEYS = tuple(_environ_key(h) for h in REQUEST_ID_HEADERS)
_ATTRIBUTES_KEY = _environ_key(CUSTOM_ATTRIBUTES)
_TARGET_KEY = _environ_key(TARGET_MODEL)
_EXPLAIN_KEY = _environ_key(ENABLE_EXPLANATIONS)


def _body_length(environ: dict[str, Any]) -> int | None:
    """The body's length when it is known up front (a chunked body is left to Flask)."""
    given = environ.get("CONTENT_LENGTH")
    if given:
        return int(given) if given.isdigit() else None
    return None if environ.get("HTTP_TRANSFER_ENCODING") else 0  # no length, no encoding: no body


# --- the hot path -----------------------------------------------------------------------------
class HotPath:
    def __init__(self, flask_app: WsgiApp, settings: Settings, registry: ModelRegistry,
                 dataplane: DataPlane) -> None:
        self.flask_app = flask_app
        self.settings = settings
        self.registry = registry
        self.dataplane = dataplane
        self.max_bytes = settings.max_payload_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = self.route(environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"))
        # An explanation request (Clarify's envelope) is rare and costly: Flask's route answers it.
        if route is None or _body_length(environ) is None or _EXPLAIN_KEY in environ:
            return self.flask_app(environ, start_response)
        status, headers, body = self.respond(route, environ)
        start_response(status, headers)
        return [body]

    def route(self, path: str | None, method: str | None) -> Callable[[dict[str, Any]], Answer] | None:
        """The hot route for this request line, or None when Flask answers it."""
        if path == "/invocations" and method == "POST":
            return self._invocations
        if path == "/ping" and method == "GET":
            return self._ping
        return None

    def respond(self, route: Callable[[dict[str, Any]], Answer],
                environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Status line, headers and body of a hot request; never raises (errors are answers)."""
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        started = time.perf_counter()
        rid = request_id(environ.get(k) for k in _REQUEST_ID_KEYS)
        request_id_var.set(rid)
        version = ""
        try:
            status, body, media, version = route(environ)
            # A 204 carries no content, so neither a Content-Type nor a Content-Length (RFC 9110, 8.6).
            headers = [("Content-Type", content_type(media)), ("Content-Length", str(len(body)))] \
                if status != 204 else []
        except Exception as exc:
            if not isinstance(exc, ServiceError):
                log.exception("unhandled error on %s %s", method, path)
                exc = ServiceError("Internal error; see the server log for this request id")
            status, body, extra = error_parts(exc, rid)
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       *extra.items()]
        headers.append(("X-Request-Id", rid))
        attributes = environ.get(_ATTRIBUTES_KEY)
        if attributes is not None:
            headers.append((CUSTOM_ATTRIBUTES, attributes))
        finished(path or "", method or "", path or "", status, version, time.perf_counter() - started)
        request_id_var.set(None)
        return status_line(status), headers, body

    def _ping(self, environ: dict[str, Any]) -> Answer:
        slot = self.registry.default
        if slot.state == "ready":
            return 200, HEALTHY, "application/json", ""
        return 503, json.dumps({"status": slot.state, "reason": slot.reason}).encode(), "application/json", ""

    def _invocations(self, environ: dict[str, Any]) -> Answer:
        length = _body_length(environ) or 0
        stream = environ["wsgi.input"]
        if length > self.max_bytes:
            discard_body(stream, length)
            raise too_large(self.settings)
        body = stream.read(length) if length else b""
        answer = self.dataplane.invoke(Invocation(body, environ.get("CONTENT_TYPE"),
                                                  environ.get("HTTP_ACCEPT"), environ.get(_TARGET_KEY),
                                                  request_id_var.get()))
        version = answer.model.version
        if answer.status == 204:
            return 204, b"", "", version
        return answer.status, answer.body, answer.content_type or "application/octet-stream", version
