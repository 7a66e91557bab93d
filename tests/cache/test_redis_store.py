"""The response cache's Redis store on a real redis-server: namespaced keys that expire with their
TTL, a bound on each value, and a damaged entry read as a miss."""

from __future__ import annotations

import asyncio
import uuid

import redis

from vlserve.cache import CachedAnswer, ResponseCache
from vlserve.cache.redis import RedisStore


def test_entries_are_prefixed_expire_and_are_bounded(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:response:"
    raw = redis.Redis.from_url(redis_url)

    async def main() -> None:
        cache = ResponseCache(RedisStore(redis_url, prefix=prefix, timeout=2.0), max_entry_bytes=2048)
        try:
            answer = CachedAnswer(text="a cat", answer={"label": "cat"}, confidence=0.5, metadata={"model": "tiny"})
            assert await cache.store_answer("k1", answer, ttl=30)
            assert await cache.lookup("k1") == answer
            assert await cache.lookup("k2") is None
            assert not await cache.store_answer("big", CachedAnswer("x" * 4096, "x" * 4096, None), ttl=30)
            raw.set(prefix + "broken", b"{not json", px=30_000)
            assert await cache.lookup("broken") is None
            stats = cache.stats
            assert (stats.hits, stats.misses, stats.stored, stats.rejected) == (1, 2, 1, 1)  # broken: a miss
        finally:
            await cache.aclose()

    asyncio.run(main())
    keys = sorted(k.decode() for k in raw.scan_iter(match=prefix + "*"))
    assert keys == [prefix + "broken", prefix + "k1"]  # nothing else written, nothing outside the prefix
    assert 0 < raw.pttl(prefix + "k1") <= 30_000
    raw.delete(*keys)
    raw.close()
