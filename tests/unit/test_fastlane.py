"""inference/fast/fastlane.py: which request heads the worker answers itself, and the bytes it writes.
tests/e2e/test_fastlane.py compares those answers with gunicorn's on a real server."""

from __future__ import annotations

import pytest

from inference.fast import fastlane

PLAIN = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nAccept: text/csv\r\n"
         b"X-Request-Id: r1\r\nX-Amzn-SageMaker-Custom-Attributes: a=1\r\nContent-Length: 5\r\n\r\n1,2,3")


def test_a_plain_invocation_becomes_the_environ_hotpath_reads() -> None:
    request = fastlane.parse(PLAIN)
    assert request is not None
    assert (request.method, request.path, request.body_size) == ("POST", "/invocations", 5)
    assert PLAIN[request.head_size:] == b"1,2,3"
    assert request.environ == {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/invocations", "CONTENT_TYPE": "text/csv",
        "HTTP_ACCEPT": "text/csv", "HTTP_X_REQUEST_ID": "r1", "CONTENT_LENGTH": "5",
        "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES": "a=1"}


def test_header_names_are_case_insensitive_and_values_lose_surrounding_blanks() -> None:
    request = fastlane.parse(b"GET /ping HTTP/1.1\r\nCONNECTION:  Keep-Alive \r\naccept:\t*/*\r\n\r\n")
    assert request is not None and request.environ["HTTP_ACCEPT"] == "*/*"
    bare = fastlane.parse(b"POST /invocations HTTP/1.1\r\n\r\n")
    assert bare is not None and bare.body_size == 0 and "CONTENT_LENGTH" not in bare.environ


@pytest.mark.parametrize("head", [
    b"GET /ping HTTP/1.0\r\n\r\n",                                   # keep-alive rules differ
    b"GET /ping?x=1 HTTP/1.1\r\n\r\n",                               # a query string
    b"GET /execution-parameters HTTP/1.1\r\n\r\n",                   # not a hot route
    b"PUT /invocations HTTP/1.1\r\n\r\n",
    b"get /ping HTTP/1.1\r\n\r\n",
    b"GET  /ping HTTP/1.1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: 1 1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nAccept: a\r\nAccept: b\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",                # GET with a body
    b"GET /ping HTTP/1.1\r\nX_Request_Id: a\r\n\r\n",                  # gunicorn drops "_" names
    b"GET /ping HTTP/1.1\r\nHost : x\r\n\r\n",                         # space before the colon
    b"GET /ping HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",               # obsolete line folding
    b"GET /ping HTTP/1.1\r\nX-A: 1\nX-B: 2\r\n\r\n",                    # a bare LF
    b"GET /ping HTTP/1.1\r\nX-A: \x00\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nnocolon\r\n\r\n",
    b"GET /ping HTTP/1.1\r\n" + b"X-A: 1\r\n" * (fastlane.FIELDS_MAX + 1) + b"\r\n",
    b"GET /ping HTTP/1.1\r\nX-A: " + b"a" * fastlane.HEAD_MAX + b"\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: x\r\n",                              # the head is not complete
])
def test_anything_not_certainly_plain_is_left_to_gunicorn(head: bytes) -> None:
    assert fastlane.parse(head) is None


def test_the_answer_is_what_gunicorn_writes_on_a_kept_alive_connection() -> None:
    out = fastlane.response("200 OK", [("Content-Type", "text/csv; charset=utf-8"), ("Content-Length", "3"),
                                       ("X-Request-Id", " r1\t")], b"0.5", b"Wed, 02 Dec 2026 06:00:00 GMT")
    assert out == (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Wed, 02 Dec 2026 06:00:00 GMT\r\n"
                   b"Connection: keep-alive\r\nContent-Type: text/csv; charset=utf-8\r\nContent-Length: 3\r\n"
                   b"X-Request-Id: r1\r\n\r\n0.5")


def test_the_date_is_formatted_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    dates = fastlane.Dates()
    monkeypatch.setattr(fastlane.time, "time", lambda: 1796191200.7)
    first = dates.now()
    assert first == b"Wed, 02 Dec 2026 06:00:00 GMT" and dates.now() is first
    monkeypatch.setattr(fastlane.time, "time", lambda: 1796191201.1)
    assert dates.now() == b"Wed, 02 Dec 2026 06:00:01 GMT"
