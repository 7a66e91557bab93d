"""The response cache: finished answers of deterministic requests, by a key of everything that
decides the answer (see :mod:`vlserve.service.caching` for which requests qualify and their keys).

Entries are JSON bytes in a :class:`ResponseStore`: this replica's memory (:class:`MemoryStore`,
bounded in bytes, least recently used first) or Redis (:class:`~vlserve.cache.redis.RedisStore`,
shared by gateways). A store that fails answers a miss: the cache never fails a request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from vlserve.cache.lru import ByteLRU, CacheStats

log = logging.getLogger("vlserve.cache")


@dataclass
class CachedAnswer:
    """What a cached request is answered with: the model's text (streamed as one delta), the
    task's answer as JSON, and the metadata of the answer that was stored."""

    text: str
    answer: Any
    confidence: float | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer | None:
        try:
            raw = json.loads(data)
            return cls(text=str(raw["text"]), answer=raw["answer"], confidence=raw.get("confidence"),
                       metadata=dict(raw.get("metadata") or {}))
        except (ValueError, KeyError, TypeError):
            return None


class ResponseStore(Protocol):
    """Where answers live: bytes by key, each with a time to live."""

    stats: CacheStats

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """This replica's own answers, at most ``max_bytes`` together."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[str, bytes] = ByteLRU("response", max_bytes)
        self.stats = self._lru.stats

    async def get(self, key: str) -> bytes | None:
        return self._lru.get(key)

    async def put(self, key: str, value: bytes, ttl: float) -> bool:
        return self._lru.put(key, value, len(value) + len(key), ttl=ttl)

    async def aclose(self) -> None:
        self._lru.clear()


class ResponseCache:
    """Look up and store :class:`CachedAnswer` s; values above ``max_entry_bytes`` are not stored."""

    def __init__(self, store: ResponseStore, *, max_entry_bytes: int) -> None:
        self.store = store
        self.max_entry_bytes = max_entry_bytes

    @property
    def stats(self) -> CacheStats:
        return self.store.stats

    async def lookup(self, key: str) -> CachedAnswer | None:
        data = await self.store.get(key)
        if data is None:
            return None
        answer = CachedAnswer.from_bytes(data)
        if answer is None:  # written by an incompatible version, or damaged: treat as absent
            log.warning("response cache entry %s could not be read; ignored", key[:16])
            self.stats.hits -= 1  # the store found bytes, but the cache had no answer
            self.stats.misses += 1
        return answer

    async def store_answer(self, key: str, answer: CachedAnswer, ttl: float) -> bool:
        data = answer.to_bytes()
        if len(data) > self.max_entry_bytes:
            self.stats.rejected += 1
            return False
        return await self.store.put(key, data, ttl)

    async def aclose(self) -> None:
        await self.store.aclose()
