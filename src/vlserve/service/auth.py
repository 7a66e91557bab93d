"""API keys (stored as SHA-256 hashes) and a per-key request-rate limit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from vlserve.config import ApiKey
from vlserve.errors import AuthError, RateLimitError


def hash_key(key: str) -> str:
    """The value to put in the config's ``auth.keys[].sha256`` for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "vls-" + secrets.token_urlsafe(32)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyRing:
    """Checks ``Authorization: Bearer <key>`` headers and meters each key's request rate.

    With no keys configured the service is open and unmetered (a private deployment behind its
    own gateway); configure at least one key to require authentication.
    """

    def __init__(self, keys: list[ApiKey], default_rate_per_minute: int) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        self._default_rate = default_rate_per_minute
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the caller's key id (None when auth is off); raise AuthError otherwise."""
        if not self._keys:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(token.strip().encode()).digest()
        match = None
        for stored, key in self._keys:
            if hmac.compare_digest(stored, digest):  # constant time, and every key is compared
                match = key
        if match is None:
            raise AuthError("invalid API key")
        self._admit(match)
        return match.id

    def _admit(self, key: ApiKey) -> None:
        rate = key.rate_per_minute or self._default_rate
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(key.id, _Bucket(tokens=float(rate), updated=now))
            bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60.0)
            bucket.updated = now
            if bucket.tokens < 1.0:
                wait = (1.0 - bucket.tokens) * 60.0 / rate
                raise RateLimitError(f"rate limit of {rate} requests per minute exceeded", retry_after=wait)
            bucket.tokens -= 1.0
