"""The gunicorn worker `serve` runs: gthread's event loop and keep-alive, without its threads.

gunicorn's sync worker closes the connection after every response, so each request pays a TCP
handshake and teardown on both sides; gthread keeps connections open but hands every request
from its event loop to a pool thread and back, which costs more than a one-row prediction.
This worker keeps gthread's loop (accept, keep-alive, idle and pending connection timeouts,
graceful shutdown) and answers each request inline in that loop, one at a time as sync does:
a model copy is used by one request at a time, and a request that hangs stops the worker's
heartbeat, so gunicorn's timeout still restarts it.

A connection waits in the loop until its whole request head has arrived: the loop gathers the
bytes as they come, and only a complete head is answered inline. So a client that connects and
sends nothing, or dribbles its head a byte a second (slowloris), holds no worker: it is closed
when its keep-alive time (``keepalive``, 5 s from connecting or from the previous answer) ends
before its head is complete. A body is read inline and bounded by the worker timeout only: a
client that sends a slow body on purpose is what a fronting proxy (nginx, SageMaker's) stops.

A complete head of GET /ping or POST /invocations in its plain form is answered right there,
without gunicorn's parser or response object (inference/fast/fastlane.py says which requests
and why); the connection stays registered with the loop, so a kept-alive client costs no poller
changes between its requests. Everything else, and every request while the worker is stopping
or about to close the connection, takes gunicorn's path as before.

A body that ends before its Content-Length (the client closed its side, or went away) is never
handed to a route as if it were whole: on both paths the request is answered 400 (the JSON error
every route answers, ``bad_input``) with ``Connection: close``, and the connection closes. A route
that does not read its body (a 404, a 405) answers as it does, and the connection closes after.
What gunicorn itself refuses (a bad request line or header, an over-long URL or head) is answered
in the same JSON shape, not gunicorn's HTML page.

New connections are spread evenly over the workers (inference/fast/balance.py says why and how).

The access lines of the requests one pass of the loop answers are written together when the
pass ends (inference/fast/lines.py, InfoLines.held): one write for them all, a few microseconds or a
long request's time after each answer. A worker killed outright (SIGKILL) loses the lines of
the pass it was in.
"""

from __future__ import annotations

import io
import selectors
import socket
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.workers.gthread import TConn

from inference import metrics
from inference.fast import fastlane
from inference.fast.balance import Balancer
from inference.fast.hotpath import HotPath
from inference.fast.lines import access_lines
from inference.gthread import GthreadWorker, ended_early

# A head this long without its blank line is refused (431) by the worker: gunicorn's parser would
# wait for the rest (its own limits allow 100 fields of 8190 bytes) with the loop blocked.
HEAD_LIMIT = 64 * 1024
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
# What _serve_fast did with a connection.
_KEPT, _FALLBACK, _CLOSED = "kept", "fallback", "closed"


class _NoPool:
    """Stands where gthread keeps its thread pool: requests never leave the loop."""

    def shutdown(self, wait: bool = True) -> None:
        return None


def _head_complete(head: bytes) -> bool:
    return len(head) >= HEAD_LIMIT or any(end in head for end in _HEAD_ENDS)


def _overlong(head: bytes) -> bool:
    return len(head) >= HEAD_LIMIT and not any(end in head for end in _HEAD_ENDS)


class _EndedEarly:
    """The fast lane's wsgi.input for a body that ended early: reading it raises what gunicorn's
    path raises (inference/gthread.py), so the route answers the same 400."""

    def __init__(self, length: int) -> None:
        self.length = length

    def read(self, size: int = -1) -> bytes:
        raise ended_early(self.length)


class KeepAliveWorker(GthreadWorker):
    hot: HotPath | None = None
    balancer: Balancer | None = None

    def get_thread_pool(self) -> Any:
        return _NoPool()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        hot = getattr(self.wsgi, "wsgi_app", None)  # the Flask app's WSGI callable (hosting.py)
        self.hot = hot if isinstance(hot, HotPath) and not self.cfg.is_ssl else None
        self.dates = fastlane.Dates()
        shares, slot = getattr(self, "balance_shares", None), getattr(self, "balance_slot", None)
        if shares is not None and slot is not None:  # set by server.py's pre_fork hook
            self.balancer = Balancer(shares, slot)
            self.balancer.publish(0)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # The access lines of the requests one pass answers go out in one write at its end, and
        # their predicted rows are counted once.
        held = access_lines.hold()  # not ``with held()``: a generator's enter and exit cost more
        rows = metrics.hold_rows()
        try:
            super().wait_for_and_dispatch_events(timeout)
        finally:
            if rows:
                metrics.release_rows()
            if held:
                access_lines.release()
        if self.balancer is not None:  # gthread's paths that close connections count them down
            self.balancer.publish(self.nr_conns)

    def accept(self, listener: Any) -> None:
        balancer = self.balancer
        if balancer is not None and balancer.should_leave(self.nr_conns):
            return  # a worker holding fewer connections takes it (inference/fast/balance.py)
        try:
            sock, client = listener.accept()
        except BlockingIOError:  # another worker took it
            return
        self.nr_conns += 1
        if balancer is not None:
            balancer.accepted(self.nr_conns)
        conn = TConn(self.cfg, sock, client, listener.getsockname())
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _gather_head(self, conn: Any) -> bool | None:
        """Read what the client sent so far: True once its request head is complete (or too long),
        False while it is not, None when the client closed or failed."""
        if self.cfg.is_ssl:  # TLS bytes cannot be read for a head here; gunicorn's path as it was
            return True
        try:
            data = conn.sock.recv(HEAD_LIMIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return None
        if not data:
            return None
        head = getattr(conn, "head", b"") + data
        conn.head = head
        return _head_complete(head)

    def _on_readable(self, waiting: Any, conn: Any, client: socket.socket) -> None:
        complete = self._gather_head(conn)
        if complete is False:
            return  # stays in the poller and in ``waiting``; its keep-alive deadline still runs
        if complete and self.hot is not None:
            try:
                served = self._serve_fast(conn)
            except Exception:  # a bug here must cost one connection, not the worker and all of its
                self.log.exception("fast lane failed; closing the connection")
                served = _CLOSED
            if served == _KEPT:
                waiting.remove(conn)
                conn.set_timeout()  # a fresh deadline, so the deque stays in deadline order
                self.keepalived_conns.append(conn)
                if waiting is not self.keepalived_conns:  # it came in as pending
                    readable = partial(self.on_client_socket_readable, conn)
                    self.poller.modify(client, selectors.EVENT_READ, readable)
                return
            if served == _CLOSED:
                complete = None
        self.poller.unregister(client)
        waiting.remove(conn)
        if complete is None:
            self.nr_conns -= 1
            conn.close()
            return
        if _overlong(conn.head):
            self.nr_conns -= 1
            self.handle_error(None, conn.sock, conn.client,
                              LimitRequestHeaders(f"no end of the request head in {HEAD_LIMIT} bytes"))
            conn.close(graceful=True)  # as gthread closes what it refused: no reset cuts the answer
            return
        conn.data_ready = True
        self.enqueue_req(conn)

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        self._on_readable(self.pending_conns, conn, client)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        self._on_readable(self.keepalived_conns, conn, client)

    def enqueue_req(self, conn: Any) -> None:
        head = getattr(conn, "head", b"")
        if head:  # what the loop gathered goes back in front of the parser's input
            conn.head = b""
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(head)
        # handle() answers errors itself; what escapes it (the SystemExit of gunicorn's timeout
        # abort) must end the worker, as it ends a sync worker.
        keep = self.handle(conn)
        # gthread's finish_request hands a connection whose next request is already buffered back
        # to enqueue_req: inline here, each pipelined request was one call deeper, and the stack
        # ran out after some 480. They are answered in this loop instead.
        while keep is True and conn.parser.unreader.buf.getvalue():
            keep = self.handle(conn)
        done: Future[Any] = Future()
        done.set_result(keep)
        self.finish_request(conn, done)

    def _may_keep_alive(self) -> bool:
        """What gunicorn's handle_request checks before it answers with keep-alive."""
        return (self.alive and bool(self.cfg.keepalive) and self.nr + 1 < self.max_requests
                and len(self.keepalived_conns) < self.max_keepalived)

    def _serve_fast(self, conn: Any) -> str:
        """Answer the hot requests at the front of ``conn.head``: _KEPT when all were answered
        (what is left is the start of the next request), _FALLBACK when ``conn.head`` holds one
        for gunicorn, _CLOSED when the client went away."""
        hot = self.hot
        assert hot is not None
        while True:
            buf = conn.head
            request = fastlane.parse(buf)
            if request is None or request.body_size > hot.max_bytes or not self._may_keep_alive():
                return _FALLBACK
            route = hot.route(request.path, request.method)
            if route is None:
                return _FALLBACK
            end = request.head_size + request.body_size
            if len(buf) < end:
                rest = _read_exactly(conn.sock, end - len(buf))
                if rest is None:
                    self._refuse_ended_early(conn, route, request)
                    return _CLOSED
                buf += rest
            request.environ["wsgi.input"] = io.BytesIO(buf[request.head_size:end])
            status, headers, body = hot.respond(route, request.environ)
            self.nr += 1
            if not _send(conn.sock, fastlane.response(status, headers, body, self.dates.now())):
                return _CLOSED
            conn.head = buf[end:]
            if not _head_complete(conn.head):
                return _KEPT

    def _refuse_ended_early(self, conn: Any, route: Any, request: fastlane.Request) -> None:
        """The 400 gunicorn's path answers for a body that ended early, closing the connection."""
        assert self.hot is not None
        request.environ["wsgi.input"] = _EndedEarly(request.body_size)
        status, headers, body = self.hot.respond(route, request.environ)
        self.nr += 1
        _send(conn.sock, fastlane.response(status, headers, body, self.dates.now(), fastlane.CLOSE))


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """The rest of a body, read inline as gunicorn reads it (bounded by the worker timeout)."""
    parts = []
    sock.setblocking(True)
    try:
        while size > 0:
            chunk = sock.recv(min(size, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            size -= len(chunk)
    except OSError:
        return None
    finally:
        sock.setblocking(False)
    return b"".join(parts)


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sent = sock.send(data)  # a small answer fits the socket buffer: no mode switch
        if sent < len(data):
            sock.setblocking(True)
            try:
                sock.sendall(memoryview(data)[sent:])
            finally:
                sock.setblocking(False)
    except BlockingIOError:
        sock.setblocking(True)
        try:
            sock.sendall(data)
        except OSError:
            return False
        finally:
            sock.setblocking(False)
    except OSError:
        return False
    return True
