"""API keys for the portal: stored as SHA-256 hashes, checked per request, managed by a CLI.

Portal routes need ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` when
MLAPP_AUTH=required, or when MLAPP_AUTH=auto (the default) and a key was ever created: revoking
the last key locks the portal rather than opening it.
/ping and /invocations keep SageMaker's semantics and never ask for a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from inference.errors import Unauthorized
from inference.portal.store import Store

PREFIX = "mlapp_"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyChecker:
    """Caches the active key hashes for a few seconds so each request costs no query."""

    def __init__(self, store: Store, mode: str, ttl: float = 5.0) -> None:
        self.store, self.mode, self.ttl = store, mode, ttl
        self._hashes: set[str] = set()
        self._any = False
        self._loaded = -float("inf")

    def _active(self) -> set[str]:
        if time.monotonic() - self._loaded > self.ttl:
            self._hashes, self._any = self.store.key_hashes()
            self._loaded = time.monotonic()
        return self._hashes

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
