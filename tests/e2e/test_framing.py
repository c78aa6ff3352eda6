"""HTTP framing on a real `serve` (issue 26), over raw sockets: a long pipeline on gunicorn's path,
a body that ends before its Content-Length, and the errors the server itself answers, which are
JSON in the project's error shape like every other answer."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from container.paths import MLPaths
from tests.conftest import speed_layer_on
from tests.e2e.helpers import serving

pytestmark = pytest.mark.e2e

CSV_ROWS = b"1,2,3,4,5,6\n" * 3


@pytest.fixture(scope="module")
def port(numeric_model: MLPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with serving(numeric_model.base, tmp_path_factory.mktemp("framing")) as port:
        yield port


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def _split(raw: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, header fields (lower-case names) and body of one whole answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {k.lower(): v for k, _, v in (x.partition(b": ") for x in lines)}
    return status, fields, body


def _answers(data: bytes) -> list[bytes]:
    """The answers in ``data``, each framed by its Content-Length."""
    answers = []
    while data:
        head_end = data.index(b"\r\n\r\n") + 4
        length = int(_split(data[:head_end])[1].get(b"content-length", b"0"))
        answers.append(data[:head_end + length])
        data = data[head_end + length:]
    return answers


def test_thousands_of_pipelined_requests_on_gunicorns_path_are_all_answered(port: int) -> None:
    # A Flask route and a hot one the fast lane leaves to gunicorn (TE): both parsed by gunicorn,
    # the next one already buffered when each is answered.
    requests = [b"GET /execution-parameters HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GET /ping HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n"] * 1000
    closing = b"GET /ping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with _connect(port) as sock:
        # sent from a thread: the answers come back while the requests are still going out
        sender = threading.Thread(target=sock.sendall, args=(b"".join(requests) + closing,))
        sender.start()
        answers = _answers(_until_closed(sock))
        sender.join()
    assert len(answers) == len(requests) + 1
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)


def _short_body(port: int, extra: bytes = b"", path: bytes = b"/invocations") -> bytes:
    """A POST whose Content-Length says three rows, of which two are sent, then a half-close."""
    head = (b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: text/csv\r\nX-Request-Id: short-1\r\n"
            b"Content-Length: %d\r\n" % len(CSV_ROWS) + extra + b"\r\n")
    with _connect(port) as sock:
        sock.sendall(head + CSV_ROWS[:24])
        sock.shutdown(socket.SHUT_WR)
        return _until_closed(sock)


def _without_date(answer: bytes) -> bytes:
    return b"\r\n".join(x for x in answer.split(b"\r\n") if not x.startswith(b"Date: "))


def test_a_body_shorter_than_its_content_length_is_refused_alike_on_both_paths(port: int) -> None:
    fast = _short_body(port)
    slow = _short_body(port, b"TE: trailers\r\n")  # the same request, parsed by gunicorn
    assert _without_date(fast) == _without_date(slow)
    status, fields, body = _split(fast)
    assert status == b"HTTP/1.1 400 BAD REQUEST"
    assert fields[b"connection"] == b"close" and fields[b"content-type"] == b"application/json"
    error = json.loads(body)
    assert error["request_id"] == "short-1" and error["error"]["code"] == "bad_input"
    assert "Content-Length" in error["error"]["message"]


def test_a_route_that_leaves_a_short_body_unread_answers_once(port: int) -> None:
    answer = _short_body(port, path=b"/execution-parameters")  # a GET route: 405, body unread
    assert len(_answers(answer)) == 1 and _split(answer)[0].startswith(b"HTTP/1.1 405 ")


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"414"),
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /ping HTTP/1.1\r\nBad Name: x\r\n\r\n", b"400"),
    (b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),
    (b"GET /ping HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", b"431"),
    (b"GET /ping HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 120 + b"\r\n", b"431"),
    (b"POST /invocations HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", b"400"),
    (b"POST /invocations HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n", b"501"),
    # no end of head within the worker's limit: the speed layer's worker gathers heads in its loop;
    # gunicorn's own parser waits for the rest of the head (MLSHIP_FAST off)
    pytest.param(b"GET /ping HTTP/1.1\r\n" + b"x" * 70_000, b"431",
                 marks=pytest.mark.skipif(not speed_layer_on(), reason="the speed layer's worker's limit")),
])
def test_what_the_server_refuses_itself_is_a_json_error(port: int, raw: bytes, status: bytes) -> None:
    with _connect(port) as sock:
        sock.sendall(raw)
        answer = _until_closed(sock)
    line, fields, body = _split(answer)
    assert line.split(b" ")[1] == status, answer[:300]
    assert fields[b"content-type"] == b"application/json" and fields[b"connection"] == b"close"
    assert int(fields[b"content-length"]) == len(body)
    error = json.loads(body)
    assert set(error) == {"error", "request_id"} and error["request_id"]
    assert fields[b"x-request-id"].decode() == error["request_id"]
    assert isinstance(error["error"]["code"], str) and error["error"]["message"]


def test_a_refused_request_keeps_the_request_id_it_sent(port: int) -> None:
    with _connect(port) as sock:  # its head was read before the refusal
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-7\r\n"
                     b"Transfer-Encoding: gzip\r\n\r\n")
        line, fields, body = _split(_until_closed(sock))
    assert line.startswith(b"HTTP/1.1 400 ") and fields[b"x-request-id"] == b"mine-7"
    assert json.loads(body)["request_id"] == "mine-7"
