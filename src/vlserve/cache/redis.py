"""The response cache in Redis, shared by every gateway replica.

Keys are ``prefix + key`` (the key is a SHA-256, so nothing of a request is readable in Redis);
each value expires with its TTL (``SET ... PX``). Values are bounded by the caller
(``cache.response.max_entry_bytes``); the total is bounded by the Redis server's own ``maxmemory``
with an LRU policy (``allkeys-lru``), which is the Redis way to bound a cache in bytes.
A Redis that is down or slow (``timeout``) answers a miss and counts an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vlserve.cache.lru import CacheStats

log = logging.getLogger("vlserve.cache")


class RedisStore:
    def __init__(self, url: str, *, prefix: str, timeout: float, name: str = "response") -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.timeout = timeout
        self.stats = CacheStats(name)
        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await asyncio.wait_for(self._client.get(self.prefix + key), self.timeout)
        except Exception as err:  # any Redis or network failure: a miss, never a failed request
            self._failed("lookup", err)
            self.stats.misses += 1
            return None
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(value)

    async def put(self, key: str, value: bytes, ttl: float) -> bool:
        try:
            await asyncio.wait_for(self._client.set(self.prefix + key, value, px=max(1, int(ttl * 1000))),
                                   self.timeout)
        except Exception as err:
            self._failed("store", err)
            return False
        self.stats.stored += 1  # Redis expires and evicts on its own: bytes held are its to report
        return True

    def _failed(self, what: str, err: Exception) -> None:
        self.stats.errors += 1
        log.warning("response cache %s in Redis failed (%s): answered as a miss", what, type(err).__name__)

    async def aclose(self) -> None:
        await self._client.aclose()
