"""gunicorn's gthread worker with the project's answers where gunicorn writes its own.

What gunicorn refuses itself (a bad request line or header, an over-long URL or head) is answered
in the JSON error shape every route answers, with the client's request id, not gunicorn's HTML
page; and a body that ends before its Content-Length (the client closed its side, or went away)
is never handed to a route as if it were whole: the request is answered 400 (``bad_input``) with
``Connection: close``, and the connection closes. A route that does not read its body (a 404, a
405) answers as it does, and the connection closes after.

`serve` runs this worker as it is with MLSHIP_FAST off; the speed layer's worker
(inference/fast/worker.py) builds on it.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.workers.gthread import ThreadWorker

from container.logs import request_id_var
from inference.errors import BadInput, ServiceError
from inference.exchange import REQUEST_ID_HEADERS, request_id, status_line


def ended_early(length: int) -> BadInput:
    return BadInput(f"The request body ended before the {length} bytes its Content-Length gives; "
                    "send the whole body")


class _WholeBody(LengthReader):
    """gunicorn's Content-Length reader, which returns a short body as if it were all; this one
    raises instead, and makes the answer close the connection (where the next request would
    start is unknown)."""

    def __init__(self, req: Any, reader: Any) -> None:
        super().__init__(reader.unreader, reader.length)
        self.req, self.declared = req, reader.length

    def read(self, size: int) -> bytes:
        wanted = min(self.length, size)
        data: bytes = super().read(size)
        if len(data) < wanted:
            self.req.force_close()
            raise ended_early(self.declared)
        return data


def _field(req: Any, name: str) -> str | None:
    upper = name.upper()
    return next((value for key, value in getattr(req, "headers", None) or () if key == upper), None)


def _write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's util.write_error (called by handle_error only) in the project's JSON error shape."""
    error = ServiceError(message or "Internal error; see the server log for this request id")
    if status != 500:
        error.status, error.code = status, reason.lower().replace(" ", "_")  # hosting.py's naming
    rid = request_id_var.get() or request_id(())
    body = json.dumps(error.body(rid)).encode()
    head = (f"HTTP/1.1 {status_line(status)}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-Id: {rid}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class GthreadWorker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = _write_json_error  # this process serves this worker alone
        super().init_process()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn picks the status and logs the refusal; the request id set here is in its log
        # line and in the JSON answer (_write_json_error).
        parsed = req or getattr(exc, "req", None)  # a refused header's exception holds its request
        token = request_id_var.set(request_id(_field(parsed, name) for name in REQUEST_ID_HEADERS))
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            request_id_var.reset(token)

    def handle_request(self, req: Any, conn: Any) -> bool:
        reader = req.body.reader
        if type(reader) is LengthReader and reader.length:
            req.body.reader = _WholeBody(req, reader)
        return bool(super().handle_request(req, conn))

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        try:
            return bool(super()._keepalive_after(conn, keepalive))
        except BadInput:  # a body the route left unread ended early: its answer is out, only close
            return False
