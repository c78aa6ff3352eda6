"""Whether the portal's store can be used now: the portal is optional to SageMaker's contract, so a
store that is down (a wrong MLAPP_DATABASE_URL, PostgreSQL not up yet, a restart) must never keep
/ping and /invocations from serving. Until the schema is in place the portal answers 503 naming
the store, and a background thread retries with back-off; what waits for the store (the batch
worker) starts once it is there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inference.errors import StoreUnavailable
from inference.portal.store import Store

log = logging.getLogger("inference.portal")
RETRY_AFTER = 5  # seconds a client is told to wait


class StoreHealth:
    """The background thread backs off (``first_retry`` doubling up to ``max_retry``) while nobody
    asks, and a portal request tries at once (at most every ``min_gap`` seconds, waiting up to
    ``demand_wait`` for the answer): a store that is back serves the next request, not the one
    after the back-off."""

    def __init__(self, store: Store, first_retry: float = 0.5, max_retry: float = 15.0,
                 min_gap: float = 0.5, demand_wait: float = 1.0) -> None:
        self.store = store
        self.ready = False
        self.reason = "not yet connected"  # the driver's words: for the log, never for clients
        self._on_ready: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._first, self._max, self._gap, self._wait = first_retry, max_retry, min_gap, demand_wait
        self._stopped = threading.Event()
        self._asked = threading.Event()
        self._tried = threading.Condition()
        self._attempts, self._last_attempt = 0, time.monotonic()
        if not self._try():
            threading.Thread(target=self._retry, name="mlapp-store", daemon=True).start()

    def _try(self) -> bool:
        self._last_attempt = time.monotonic()
        try:
            self.store.migrate()
        except Exception as exc:  # any driver error: the store is not usable yet
            self.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ok = False
        else:
            with self._lock:
                self.ready, self.reason = True, "ok"
                waiting, self._on_ready = self._on_ready, []
            for action in waiting:
                action()
            ok = True
        with self._tried:
            self._attempts += 1
            self._tried.notify_all()
        return ok

    def _retry(self) -> None:
        delay = self._first
        log.warning("portal store unavailable (%s); /ping and /invocations serve on, the portal answers "
                    "503 until it is back", self.reason)
        while not self._stopped.is_set():
            self._asked.wait(delay)
            self._asked.clear()
            if self._stopped.is_set():
                return
            if self._try():
                log.info("portal store reachable after %d attempts", self._attempts)
                return
            delay = min(delay * 2, self._max)

    def when_ready(self, action: Callable[[], None]) -> None:
        """Run ``action`` now if the store is ready, else as soon as it is."""
        with self._lock:
            if not self.ready:
                self._on_ready.append(action)
                return
        action()

    def require(self) -> None:
        if self.ready:
            return
        if time.monotonic() - self._last_attempt >= self._gap:  # ask the thread to try now
            with self._tried:
                seen = self._attempts
                self._asked.set()
                self._tried.wait_for(lambda: self.ready or self._attempts > seen, timeout=self._wait)
        if not self.ready:
            raise unavailable("it cannot be reached")

    def stop(self) -> None:
        self._stopped.set()
        self._asked.set()


def unavailable(what: str) -> StoreUnavailable:
    """The 503 of a portal request while the store is down. ``what`` is said to the client, so it
    names no driver, host or port (the log has those)."""
    return StoreUnavailable(f"The portal's store is unavailable ({what}); /invocations is not affected. "
                            f"Retry in {RETRY_AFTER} s", headers={"Retry-After": str(RETRY_AFTER)})


class RateLimitedLog:
    """At most one line per ``seconds`` for a repeating failure, with the count of the ones left out."""

    def __init__(self, logger: logging.Logger, seconds: float = 30.0) -> None:
        self.logger, self.seconds = logger, seconds
        self._last = -float("inf")
        self._skipped = 0

    def exception(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.seconds:
            self._skipped += 1
            return
        suffix = f" ({self._skipped} more like it since the last line)" if self._skipped else ""
        self._last, self._skipped = now, 0
        self.logger.exception(message + suffix)
