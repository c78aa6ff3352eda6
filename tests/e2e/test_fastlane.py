"""The worker's fast lane (inference/fast/fastlane.py) on a real `serve`: every request of the hot-path
comparison sent as it is (the fast lane answers the plain ones) and again with a ``TE: trailers``
field, which the fast lane leaves to gunicorn; the two answers must be the same bytes but for the
Date. Pipelined and split requests, and gunicorn's own refusals, on the same connections."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests.conftest import speed_layer_on
from tests.e2e.helpers import free_port, start_serve, stop, wait_ready
from tests.service.test_hotpath import GENDER

pytestmark = pytest.mark.skipif(not speed_layer_on(), reason="the speed layer's own parts: MLSHIP_FAST is off")

Answer = tuple[bytes, list[bytes], bytes]  # status line, header lines but Date, body


@pytest.fixture(scope="module")
def server(gender_model: MLPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    port, log = free_port(), tmp_path_factory.mktemp("fastlane") / "serve.log"
    # DEBUG: gunicorn's default pre_request hook logs each request it parses, the fast lane's not.
    proc = start_serve(gender_model.base, port, log, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1", "SM_LOG_LEVEL": "DEBUG"})
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        yield port, log
    finally:
        stop(proc)


def _request(method: str, path: str, body: str, headers: dict[str, str], rid: str, extra: str = "") -> bytes:
    data = body.encode()
    fields = {"Host": "127.0.0.1", "X-Request-Id": rid, **headers}
    if method == "POST":
        fields["Content-Length"] = str(len(data))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + extra
    return head.encode("latin-1") + b"\r\n" + data


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def answer(self, head_only: bool = False) -> Answer:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        length = next((int(v) for k, _, v in (x.partition(b": ") for x in lines) if k.lower() == b"content-length"), 0)
        if head_only:
            length = 0
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, [x for x in lines if not x.startswith(b"Date: ")], body


def _connect(port: int) -> tuple[socket.socket, _Reader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock, _Reader(sock)


def _parsed_by_gunicorn(log: Path) -> int:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return sum(1 for x in lines if x.get("logger") == "gunicorn.error" and x.get("level") == "DEBUG"
               and str(x.get("msg", "")).startswith(("GET /", "POST /", "HEAD /")))


def test_fast_lane_answers_are_gunicorns_bytes(server: tuple[int, Path]) -> None:
    port, log = server
    sock, reader = _connect(port)
    # the requests Flask answers and the body over the 1 MB limit (its 413 is gunicorn's path) aside
    fast_cases = [c for c in GENDER if not c[4] and len(c[2]) <= 1 << 20]
    before = _parsed_by_gunicorn(log)
    with sock:
        for number, (method, path, body, headers, _) in enumerate(GENDER):
            rid = f"case-{number}"
            sock.sendall(_request(method, path, body, headers, rid))
            got = reader.answer(head_only=method == "HEAD")
            sock.sendall(_request(method, path, body, headers, rid, extra="TE: trailers\r\n"))
            want = reader.answer(head_only=method == "HEAD")
            assert got == want, f"{method} {path} {headers} {body[:40]!r}"
            assert b"Connection: keep-alive" in got[1] and b"Traceback" not in got[2]
    # gunicorn parsed the TE copies and the cases set aside above; the fast lane all the others
    assert _parsed_by_gunicorn(log) - before == 2 * len(GENDER) - len(fast_cases)


def test_pipelined_and_split_requests_get_the_same_answers(server: tuple[int, Path]) -> None:
    port, _ = server
    cases = [c for c in GENDER if c[0] != "HEAD"]
    requests = [_request(m, p, b, h, f"pipe-{n}") for n, (m, p, b, h, _) in enumerate(cases)]
    sock, reader = _connect(port)
    with sock:
        one_by_one = []
        for request in requests:
            sock.sendall(request)
            one_by_one.append(reader.answer())
        sock.sendall(b"".join(requests))  # all at once: fast, gunicorn and fast again, in order
        assert [reader.answer() for _ in requests] == one_by_one
        for request, want in zip(requests, one_by_one, strict=True):  # a head cut in two, the body later
            cut = request.index(b"\r\n") + 3
            for part in (request[:cut], request[cut:-1], request[-1:]):
                sock.sendall(part)
            assert reader.answer() == want


def test_what_gunicorn_refuses_is_still_refused(server: tuple[int, Path]) -> None:
    port, _ = server
    for raw in (b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                b"POST /invocations HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                b"GET /ping HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n"):
        sock, reader = _connect(port)
        with sock:
            sock.sendall(raw)
            status, _, _ = reader.answer()
            assert status.startswith(b"HTTP/1.1 400"), (raw, status)


def test_a_client_that_leaves_mid_body_costs_nothing(server: tuple[int, Path]) -> None:
    port, _ = server
    request = _request("POST", "/invocations", "[]" * 1000, {"Content-Type": "application/json"}, "gone")
    for _ in range(4):  # enough for both workers to get some
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request[: len(request) - 100])
    for _ in range(8):
        sock, reader = _connect(port)
        with sock:
            sock.sendall(_request("GET", "/ping", "", {}, "after"))
            assert reader.answer()[0] == b"HTTP/1.1 200 OK"


def _access_ids(log: Path) -> list[str]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [str(x.get("request_id")) for x in lines if x.get("logger") == "inference.access"]


def test_pipelined_requests_each_leave_their_access_line_in_order(server: tuple[int, Path]) -> None:
    # Answered in one pass of the worker's loop, their lines are written together when it ends.
    port, log = server
    body = '[{"device_id": "d1", "phone_brand": "Xiaomi", "device_model": "MI 3"}]'
    rids = [f"held-{n}" for n in range(6)]
    requests = [_request("POST", "/invocations", body, {"Content-Type": "application/json"}, rid) for rid in rids]
    sock, reader = _connect(port)
    with sock:
        sock.sendall(b"".join(requests))
        for _ in rids:
            assert reader.answer()[0] == b"HTTP/1.1 200 OK"
        sock.sendall(_request("GET", "/ping", "", {}, "after"))  # the next pass: the lines are out
        assert reader.answer()[0] == b"HTTP/1.1 200 OK"
    assert [x for x in _access_ids(log) if x.startswith("held-")] == rids


def _rows_counted(port: int) -> float:
    sock, reader = _connect(port)
    with sock:
        sock.sendall(_request("GET", "/metrics", "", {}, "scrape"))
        text = reader.answer()[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlship_predicted_rows_total{") and 'door="invocations"' in line)


def test_rows_held_over_a_pass_are_all_counted(server: tuple[int, Path]) -> None:
    # The rows of the requests one pass answers are counted once at its end (metrics.hold_rows).
    port, _ = server
    before = _rows_counted(port)
    body = json.dumps([{"device_id": f"r{n}", "phone_brand": "Xiaomi", "device_model": "MI 3"} for n in range(3)])
    requests = [_request("POST", "/invocations", body, {"Content-Type": "application/json"}, f"rows-{n}")
                for n in range(5)]
    sock, reader = _connect(port)
    with sock:
        sock.sendall(b"".join(requests))  # pipelined: answered in one pass
        for _ in requests:
            assert reader.answer()[0] == b"HTTP/1.1 200 OK"
        sock.sendall(_request("GET", "/ping", "", {}, "next-pass"))
        assert reader.answer()[0] == b"HTTP/1.1 200 OK"
    assert _rows_counted(port) - before == 15
