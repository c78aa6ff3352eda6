"""GET /ping and POST /invocations read and written by the worker itself, ahead of gunicorn's parser.

For a one-row prediction, gunicorn's HTTP/1.1 machinery (its request parser, the WSGI environ,
its response object) costs several times what decoding, scoring and encoding the row do. The
worker's event loop already holds each request head before anything else runs (worker.py), so
for the two hot requests in their plain form it parses the head here, builds the few environ
keys hotpath.py reads, and writes the answer hotpath.py gives, byte for byte what gunicorn
would have written (tests/service/test_fastlane.py sends the same requests both ways).

Only what is certainly plain is taken: HTTP/1.1, exactly ``GET /ping`` or ``POST /invocations``,
header names that are tokens without underscores, no control bytes, one Content-Length of
digits, no Transfer-Encoding, Expect, Upgrade, forwarding headers or Connection other than
keep-alive, neither Host nor any header hotpath.py reads given twice. Anything else returns
None and goes to gunicorn, which answers it (or refuses it) exactly as before.

What gunicorn does around a request that is not part of the answer does not happen here: its
pre_request and post_request hooks (`serve` sets neither; the default pre_request writes a DEBUG
line) and its access log (`serve` turns it off; hotpath.py writes the access line).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from typing import Any

from gunicorn import SERVER

# The request headers hotpath.py reads, by their environ keys (gunicorn's spelling).
_ENVIRON = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
    b"accept": "HTTP_ACCEPT",
    b"x-amzn-sagemaker-custom-attributes": "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES",
    b"x-amzn-sagemaker-target-model": "HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL",
    b"x-amzn-sagemaker-inference-id": "HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID",
    b"x-request-id": "HTTP_X_REQUEST_ID",
}
# Headers that change how the request is framed, answered or trusted (a proxy's scheme headers,
# which gunicorn checks against each other): gunicorn handles those.
_FRAMING = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"te", b"trailer",
                      b"x-forwarded-proto", b"x-forwarded-protocol", b"x-forwarded-ssl", b"forwarded",
                      # and Clarify's explanation header, whose request Flask's route answers
                      b"x-amzn-sagemaker-enable-explanations"))
_SINGLETON = b"host"  # gunicorn refuses a second Host (RFC 9110 5.3); Content-Type is one of _ENVIRON
_HOT = {b"GET /ping HTTP/1.1": ("GET", "/ping"), b"POST /invocations HTTP/1.1": ("POST", "/invocations")}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^`|~0-9A-Za-z]+")  # RFC 9110 token, less "_" (gunicorn drops those)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 field values allow HTAB, SP, VCHAR, obs-text
# gunicorn's own limits, kept below: a head it would refuse is never taken here.
HEAD_MAX = 8190
FIELDS_MAX = 100


@dataclass(slots=True)
class Request:
    method: str
    path: str
    environ: dict[str, Any]
    head_size: int  # bytes of the head, its blank line included
    body_size: int


def parse(buf: bytes) -> Request | None:
    """The hot request at the start of ``buf`` (its head complete), or None to leave it to gunicorn."""
    end = buf.find(b"\r\n\r\n", 0, HEAD_MAX + 4)
    if end < 0:
        return None
    parsed = _parse_head(buf[:end])
    if parsed is None:
        return None
    method, path, environ, length = parsed
    return Request(method, path, dict(environ), end + 4, length)


# A client sends the same head request after request (its SDK's headers, one body size), so a
# head is read once: a parse is a pure function of the head's bytes. The few kinds of head a
# service sees stay; heads that differ each time (a request id per request) only pass through.
@lru_cache(maxsize=256)
def _parse_head(head: bytes) -> tuple[str, str, dict[str, Any], int] | None:
    lines = head.split(b"\r\n")
    hot = _HOT.get(lines[0])
    if hot is None or len(lines) > FIELDS_MAX + 1:
        return None
    method, path = hot
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    if _CONTROL.search(b"".join(lines)):  # a bare LF or CR, a NUL: gunicorn decides
        return None
    length = 0
    hosts = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also an obs-fold line, which starts with a space
            return None
        key = name.lower()
        if key in _FRAMING:
            return None
        if key == b"connection":
            if value.strip(b" \t").lower() != b"keep-alive":
                return None
            continue
        environ_key = _ENVIRON.get(key)
        if environ_key is None:
            if key == _SINGLETON:
                if hosts:
                    return None
                hosts = True
            continue
        if environ_key in environ:
            return None
        text = value.strip(b" \t")
        if key == b"content-length":
            if not text.isdigit() or len(text) > 12:
                return None
            length = int(text)
        environ[environ_key] = text.decode("latin-1")
    if method == "GET" and length:
        return None
    return method, path, environ, length


class Dates:
    """The Date header, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, localtime=False, usegmt=True).encode("latin-1")
        return self._value


_SERVER = f"Server: {SERVER}\r\nDate: ".encode("latin-1")
KEEP_ALIVE = b"\r\nConnection: keep-alive\r\n"
CLOSE = b"\r\nConnection: close\r\n"
_BLANKS = " \t"  # gunicorn strips these around a header value (RFC 9110 5.5)


def response(status: str, headers: list[tuple[str, str]], body: bytes, date: bytes,
             connection: bytes = KEEP_ALIVE) -> bytes:
    """The bytes gunicorn writes for this answer on an HTTP/1.1 connection (kept alive unless
    ``connection`` is CLOSE)."""
    fields = "".join(f"{name}: {value.strip(_BLANKS)}\r\n" for name, value in headers)
    return b"".join((b"HTTP/1.1 ", status.encode("latin-1"), b"\r\n", _SERVER, date, connection,
                     fields.encode("latin-1"), b"\r\n", body))
