"""API keys for the portal: stored as SHA-256 hashes, checked per request, managed by a CLI.

Portal routes need ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` when
MLAPP_AUTH=required, or when MLAPP_AUTH=auto (the default) and a key was ever created: revoking
the last key locks the portal rather than opening it.
/ping and /invocations keep SageMaker's semantics and never ask for a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from inference.errors import Unauthorized
from inference.portal.health import unavailable
from inference.portal.store import Store

log = logging.getLogger("inference.portal")

PREFIX = "mlapp_"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyChecker:
    """Caches the active key hashes for a few seconds so each request costs no query.

    When the store cannot be read, the last hashes it gave stand (retried once per ``ttl``, not per
    request); if it never gave any, every portal request is a 503: the check fails closed. One
    thread reads at a time; while it does, the others use the last hashes read, or wait for it when
    there are none yet (the concurrent first calls of a fresh worker were once 503s).
    """

    def __init__(self, store: Store, mode: str, ttl: float = 5.0) -> None:
        self.store, self.mode, self.ttl = store, mode, ttl
        self._hashes: set[str] = set()
        self._any = False
        self._known = False
        self._loaded = -float("inf")
        self._failure: str | None = None
        self._reading = threading.Lock()

    def _active(self) -> set[str]:
        if time.monotonic() - self._loaded > self.ttl and self._reading.acquire(blocking=not self._known):
            try:
                if time.monotonic() - self._loaded > self.ttl:  # not read meanwhile by the one waited for
                    self._read()
            finally:
                self._reading.release()
        if not self._known:
            raise unavailable(self._failure or "API keys not read yet")
        return self._hashes

    def _read(self) -> None:
        try:
            self._hashes, self._any = self.store.key_hashes()
            self._known, self._failure = True, None
        except SQLAlchemyError as exc:
            if self._failure is None:
                log.warning("API keys could not be read from the store (%s)%s", type(exc).__name__,
                            "; the last ones read stand" if self._known else "")
            self._failure = "API keys unreadable"
        self._loaded = time.monotonic()

    def check(self, authorization: str | None, api_key: str | None) -> None:
        if self.mode == "off":
            return
        hashes = self._active()
        if self.mode == "auto" and not self._any:
            return
        key = api_key
        if not key and authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            raise Unauthorized("This portal needs an API key: send 'Authorization: Bearer <key>' or "
                               "'X-Api-Key: <key>'", headers={"WWW-Authenticate": "Bearer"})
        digest = hash_key(key)
        if not any(hmac.compare_digest(digest, h) for h in hashes):
            raise Unauthorized("The API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
