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
"""

from __future__ import annotations

import selectors
import socket
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

# A head this long without its blank line goes to gunicorn's parser, which answers 400 (its own
# limits: 8190-byte request line, 100 fields of 8190 bytes).
HEAD_LIMIT = 64 * 1024
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


class _NoPool:
    """Stands where gthread keeps its thread pool: requests never leave the loop."""

    def shutdown(self, wait: bool = True) -> None:
        return None


class KeepAliveWorker(ThreadWorker):
    def get_thread_pool(self) -> Any:
        return _NoPool()

    def accept(self, listener: Any) -> None:
        try:
            sock, client = listener.accept()
        except BlockingIOError:  # another worker took it
            return
        self.nr_conns += 1
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
        return len(head) >= HEAD_LIMIT or any(end in head for end in _HEAD_ENDS)

    def _on_readable(self, waiting: Any, conn: Any, client: socket.socket) -> None:
        complete = self._gather_head(conn)
        if complete is False:
            return  # stays in the poller and in ``waiting``; its keep-alive deadline still runs
        self.poller.unregister(client)
        waiting.remove(conn)
        if complete is None:
            self.nr_conns -= 1
            conn.close()
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
        done: Future[Any] = Future()
        done.set_result(self.handle(conn))
        self.finish_request(conn, done)
