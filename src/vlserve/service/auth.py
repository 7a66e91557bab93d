"""API keys (stored as SHA-256 hashes), a per-key request-rate limit and a per-address limit on
wrong keys (so that keys cannot be guessed at speed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
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

    #: Client addresses whose wrong keys are remembered at once; the least recent are forgotten.
    MAX_TRACKED_ADDRESSES = 65536

    def __init__(self, keys: list[ApiKey], default_rate_per_minute: int, max_failures_per_minute: int = 10) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        self._default_rate = default_rate_per_minute
        self._failure_rate = max_failures_per_minute
        self._buckets: dict[str, _Bucket] = {}
        self._failures: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None, client: str | None = None) -> str | None:
        """Return the caller's key id (None when auth is off); raise AuthError otherwise.

        ``client`` is the caller's address: once it has sent ``max_failures_per_minute`` wrong
        keys, every request from it is refused with RateLimitError (4029) until the budget refills,
        whatever key it sends.
        """
        if not self._keys:
            return None
        self._check_failures(client)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(token.strip().encode()).digest()
        match = None
        for stored, key in self._keys:
            if hmac.compare_digest(stored, digest):  # constant time, and every key is compared
                match = key
        if match is None:
            self._record_failure(client)
            raise AuthError("invalid API key")
        self._admit(match)
        return match.id

    def _check_failures(self, client: str | None) -> None:
        if client is None:
            return
        with self._lock:
            bucket = self._failures.get(client)
            if bucket is None:
                return
            tokens = self._refill(bucket, self._failure_rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) * 60.0 / self._failure_rate
            raise RateLimitError(f"too many wrong API keys from this address (at most {self._failure_rate} "
                                 "a minute); wait before trying again", retry_after=wait)

    def _record_failure(self, client: str | None) -> None:
        if client is None:
            return
        now = time.monotonic()
        with self._lock:
            bucket = self._failures.pop(client, None) or _Bucket(tokens=float(self._failure_rate), updated=now)
            self._refill(bucket, self._failure_rate)
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            self._failures[client] = bucket  # most recent last
            while len(self._failures) > self.MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)

    @staticmethod
    def _refill(bucket: _Bucket, rate: int) -> float:
        now = time.monotonic()
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60.0)
        bucket.updated = now
        return bucket.tokens

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
