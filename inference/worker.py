"""The gunicorn worker `serve` runs: gthread's event loop and keep-alive, without its threads.

gunicorn's sync worker closes the connection after every response, so each request pays a TCP
handshake and teardown on both sides; gthread keeps connections open but hands every request
from its event loop to a pool thread and back, which costs more than a one-row prediction.
This worker keeps gthread's loop (accept, keep-alive, idle and pending connection timeouts,
graceful shutdown) and answers each request inline in that loop, one at a time as sync does:
a model copy is used by one request at a time, and a request that hangs stops the worker's
heartbeat, so gunicorn's timeout still restarts it. A new connection waits in the loop until
its first bytes arrive, so a client that connects and sends nothing holds no worker.
"""

from __future__ import annotations

import selectors
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker


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

    def enqueue_req(self, conn: Any) -> None:
        # handle() answers errors itself; what escapes it (the SystemExit of gunicorn's timeout
        # abort) must end the worker, as it ends a sync worker.
        done: Future[Any] = Future()
        done.set_result(self.handle(conn))
        self.finish_request(conn, done)
