"""API keys (stored as SHA-256 hashes), a per-key request-rate limit and a per-address limit on
wrong keys (so that keys cannot be guessed at speed). The limits' token buckets live in this
process or, shared by every gateway replica, in Redis (:mod:`vlserve.service.ratelimit`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from vlserve.config import ApiKey, Settings
from vlserve.errors import AuthError, RateLimitError
from vlserve.service.ratelimit import Limiter, MemoryLimiter, RedisLimiter, Verdict


def hash_key(key: str) -> str:
    """The value to put in the config's ``auth.keys[].sha256`` for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "vls-" + secrets.token_urlsafe(32)


class KeyRing:
    """Checks ``Authorization: Bearer <key>`` headers and meters each key's request rate.

    With no keys configured the service is open and unmetered (a private deployment behind its
    own gateway); configure at least one key to require authentication. ``limiter`` holds the
    token buckets (default: this process's own).
    """

    #: Client addresses whose wrong keys are remembered at once; the least recent are forgotten.
    MAX_TRACKED_ADDRESSES = 65536

    def __init__(self, keys: list[ApiKey], default_rate_per_minute: int, max_failures_per_minute: int = 10,
                 *, limiter: Limiter | None = None) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        self._default_rate = default_rate_per_minute
        self._failure_rate = max_failures_per_minute
        self.limiter: Limiter = limiter or MemoryLimiter(self.MAX_TRACKED_ADDRESSES)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    async def authenticate(self, authorization: str | None, client: str | None = None) -> str | None:
        """Return the caller's key id (None when auth is off); raise AuthError otherwise.

        ``client`` is the caller's address: once it has sent ``max_failures_per_minute`` wrong
        keys, every request from it is refused with RateLimitError (4029) until the budget refills,
        whatever key it sends. A valid key beyond its rate is refused with 4029 too.
        """
        if not self._keys:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._raise(await self.limiter.failure(client, self._failure_rate, record=False))
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(token.strip().encode()).digest()
        match = None
        for stored, key in self._keys:
            if hmac.compare_digest(stored, digest):  # constant time, and every key is compared
                match = key
        if match is None:
            self._raise(await self.limiter.failure(client, self._failure_rate, record=True))
            raise AuthError("invalid API key")
        rate = match.rate_per_minute or self._default_rate
        self._raise(await self.limiter.admit(client, self._failure_rate, match.id, rate), rate)
        return match.id

    async def aclose(self) -> None:
        await self.limiter.aclose()

    def _raise(self, verdict: Verdict, rate: int = 0) -> None:
        if verdict.refused == "address":
            raise RateLimitError(f"too many wrong API keys from this address (at most {self._failure_rate} "
                                 "a minute); wait before trying again", retry_after=verdict.retry_after)
        if verdict.refused == "key":
            raise RateLimitError(f"rate limit of {rate} requests per minute exceeded",
                                 retry_after=verdict.retry_after)


def keyring_for(settings: Settings) -> KeyRing:
    """The key ring of ``settings.auth``, its buckets where ``auth.rate_limit_backend`` says."""
    auth = settings.auth
    limiter: Limiter | None = None
    if auth.keys and auth.rate_limit_backend_for(settings.jobs) == "redis":
        limiter = RedisLimiter(auth.redis_url or settings.jobs.redis_url, prefix=auth.redis_prefix,
                               timeout=auth.redis_timeout, on_error=auth.redis_unavailable)
    return KeyRing(auth.keys, auth.default_rate_per_minute, auth.max_failures_per_minute, limiter=limiter)
