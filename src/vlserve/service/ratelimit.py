"""Token buckets behind the API keys: each key's request rate, and each client address's budget of
wrong keys. In this process (``auth.rate_limit_backend = "memory"``), or shared by every gateway
replica through Redis (``"redis"``), so that a key's limit holds however its requests are spread.

A bucket holds at most ``rate`` tokens (requests per minute), starts full and refills at
``rate / 60`` tokens a second; a request takes one token, or is refused with the time until one
is there. In Redis each decision is one Lua script (atomic across replicas, timed by the server's
clock so skewed replica clocks agree), one round trip per request. A bucket's key expires once it
would be full again (absent means full), so Redis holds only the buckets in use.

When Redis cannot be reached, ``auth.redis_unavailable`` decides: ``"local"`` (default) falls
back to this replica's own buckets until Redis answers again (each replica then allows a key its
whole rate: availability before exactness), ``"refuse"`` answers 2001 with Retry-After.
redis-py is imported only when a Redis limiter is made.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from vlserve.errors import OverloadedError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Limiter", "MemoryLimiter", "RedisLimiter", "Verdict"]

log = logging.getLogger("vlserve.auth")


@dataclass(frozen=True)
class Verdict:
    """What a limiter decided: ``refused`` names the bucket that was empty (None: go ahead)."""

    refused: Literal["address", "key"] | None = None
    retry_after: float = 0.0


class Limiter(Protocol):
    async def admit(self, address: str | None, failure_rate: int, key: str, rate: int) -> Verdict:
        """A valid key: refused if ``address`` has no wrong-key budget left, else one token from ``key``'s
        bucket (refused when it has none)."""
        ...

    async def failure(self, address: str | None, failure_rate: int, *, record: bool) -> Verdict:
        """A missing (``record=False``) or wrong key: refused if ``address`` has no budget left;
        otherwise a wrong key spends one token of it (never below zero)."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class MemoryLimiter:
    """The buckets in this process. Addresses are remembered up to ``max_addresses``, the least
    recently failing forgotten first (keys are few: they come from the configuration)."""

    def __init__(self, max_addresses: int = 65536) -> None:
        self.max_addresses = max_addresses
        self._keys: dict[str, _Bucket] = {}
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()

    async def admit(self, address: str | None, failure_rate: int, key: str, rate: int) -> Verdict:
        return self.admit_now(address, failure_rate, key, rate)

    async def failure(self, address: str | None, failure_rate: int, *, record: bool) -> Verdict:
        return self.failure_now(address, failure_rate, record=record)

    async def aclose(self) -> None:
        return None

    # The same decisions without awaiting (the Redis limiter falls back on them).
    def admit_now(self, address: str | None, failure_rate: int, key: str, rate: int) -> Verdict:
        blocked = self._blocked(address, failure_rate)
        if blocked is not None:
            return blocked
        bucket = self._keys.setdefault(key, _Bucket(float(rate), time.monotonic()))
        tokens = _refill(bucket, rate)
        if tokens < 1.0:
            return Verdict("key", (1.0 - tokens) * 60.0 / rate)
        bucket.tokens -= 1.0
        return Verdict()

    def failure_now(self, address: str | None, failure_rate: int, *, record: bool) -> Verdict:
        blocked = self._blocked(address, failure_rate)
        if blocked is not None or address is None or not record:
            return blocked or Verdict()
        bucket = self._addresses.pop(address, None) or _Bucket(float(failure_rate), time.monotonic())
        bucket.tokens = max(0.0, _refill(bucket, failure_rate) - 1.0)
        self._addresses[address] = bucket  # most recent last
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)
        return Verdict()

    def _blocked(self, address: str | None, failure_rate: int) -> Verdict | None:
        bucket = None if address is None else self._addresses.get(address)
        if bucket is None:
            return None
        tokens = _refill(bucket, failure_rate)
        return Verdict("address", (1.0 - tokens) * 60.0 / failure_rate) if tokens < 1.0 else None


def _refill(bucket: _Bucket, rate: int) -> float:
    now = time.monotonic()
    bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60.0)
    bucket.updated = now
    return bucket.tokens


# KEYS: the address's bucket ('' when there is no address: never blocked), then the key's bucket
# (admit) or nothing (failure). ARGV: failure rate, mode ('admit' | 'failure' | 'peek'), key rate.
# -> {refused: 0 none, 1 address, 2 key; seconds to wait, as a string}.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate)
  local f = redis.call('HMGET', key, 'tokens', 'ts')
  if not f[1] then return rate end
  return math.min(rate, tonumber(f[1]) + math.max(0, now - tonumber(f[2])) * rate / 60)
end
local function store(key, rate, tokens)
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
  -- Gone once full again: an absent bucket is a full one.
  redis.call('PEXPIRE', key, math.ceil((rate - tokens) * 60000 / rate) + 1000)
end
local frate, mode = tonumber(ARGV[1]), ARGV[2]
local address = KEYS[1]
local atokens = frate
if address ~= '' then
  atokens = level(address, frate)
  if atokens < 1 then return {1, string.format('%.3f', (1 - atokens) * 60 / frate)} end
end
if mode == 'failure' then
  if address ~= '' then store(address, frate, math.max(0, atokens - 1)) end
  return {0, '0'}
end
if mode == 'peek' then return {0, '0'} end
local rate = tonumber(ARGV[3])
local tokens = level(KEYS[2], rate)
if tokens < 1 then return {2, string.format('%.3f', (1 - tokens) * 60 / rate)} end
store(KEYS[2], rate, tokens - 1)
return {0, '0'}
"""


class RedisLimiter:
    """The buckets in Redis at ``url``, keys under ``prefix`` (``<prefix>key:<id>``,
    ``<prefix>addr:<address>``); every call waits at most ``timeout`` seconds for Redis.

    ``on_error``: ``"local"`` decides with this replica's own buckets while Redis is unreachable,
    ``"refuse"`` raises :class:`OverloadedError` (2001) instead.
    """

    #: Seconds between two "Redis unreachable" warnings in the log.
    WARN_EVERY = 30.0

    def __init__(self, url: str | None = None, *, prefix: str = "vlserve:rate:", timeout: float = 0.5,
                 on_error: Literal["local", "refuse"] = "local", client: Redis | None = None) -> None:
        if (url is None) == (client is None):
            raise ValueError("give exactly one of url or client")
        if client is None:
            try:
                from redis.asyncio import Redis
            except ImportError as err:
                raise ImportError("shared rate limits need redis-py: pip install 'redis>=5'") from err
            client = Redis.from_url(url, decode_responses=True, socket_timeout=timeout,  # type: ignore[arg-type]
                                    socket_connect_timeout=timeout)
            self._owns_client = True
        else:
            self._owns_client = False
        self.prefix = prefix
        self.on_error = on_error
        self._redis = client
        self._script = client.register_script(_SCRIPT)
        self._local = MemoryLimiter()
        self._warned = float("-inf")

    async def admit(self, address: str | None, failure_rate: int, key: str, rate: int) -> Verdict:
        keys = [self._address(address), f"{self.prefix}key:{key}"]
        verdict = await self._run(keys, [failure_rate, "admit", rate])
        return verdict or self._local.admit_now(address, failure_rate, key, rate)

    async def failure(self, address: str | None, failure_rate: int, *, record: bool) -> Verdict:
        if address is None:  # nothing to count against
            return Verdict()
        verdict = await self._run([self._address(address)], [failure_rate, "failure" if record else "peek"])
        return verdict or self._local.failure_now(address, failure_rate, record=record)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    def _address(self, address: str | None) -> str:
        return "" if address is None else f"{self.prefix}addr:{address}"

    async def _run(self, keys: list[str], args: list[str | int]) -> Verdict | None:
        """The script's verdict, or None when Redis failed and the local buckets decide."""
        from redis.exceptions import RedisError

        try:
            refused, wait = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as err:
            now = time.monotonic()
            if now - self._warned >= self.WARN_EVERY:
                self._warned = now
                log.warning("rate-limit store (Redis) unreachable: %s; %s", err,
                            "using this replica's own limits" if self.on_error == "local" else "refusing requests")
            if self.on_error == "refuse":
                raise OverloadedError("the shared rate-limit store is unreachable; retry shortly",
                                      retry_after=5.0) from None
            return None
        kind: dict[int, Literal["address", "key"]] = {1: "address", 2: "key"}
        return Verdict(kind.get(int(refused)), float(wait))
