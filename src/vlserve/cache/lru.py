"""A thread-safe mapping bounded in bytes: the least recently used entries go first, optionally
after a time to live. Every cache of the service keeps its entries in one of these.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    """Counters of one cache, read by ``/metrics`` (:mod:`vlserve.cache.metrics`)."""

    name: str
    capacity: int = 0  # bytes (0: no byte bound known here, e.g. Redis)
    hits: int = 0
    misses: int = 0
    stored: int = 0
    evictions: int = 0  # entries pushed out by the byte bound
    expirations: int = 0  # entries dropped after their TTL
    rejected: int = 0  # values too large to store
    errors: int = 0  # backend failures, counted as misses (Redis unreachable)
    bytes: int = 0  # held now (Redis: not known here, 0)
    entries: int = 0


class ByteLRU(Generic[K, V]):
    """Entries ``key -> value`` with a size each; at most ``max_bytes`` together.

    A value larger than ``max_bytes`` is not stored. ``ttl`` (seconds, per entry) is checked on
    access; expired entries also go first when room is needed. ``clock`` is injectable for tests.
    """

    def __init__(self, name: str, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.stats = CacheStats(name, capacity=max_bytes)
        self._clock = clock
        self._items: OrderedDict[K, tuple[V, int, float]] = OrderedDict()  # value, size, expiry (inf: none)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[2] <= self._clock():
                self._drop(key)
                self.stats.expirations += 1
                item = None
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: K, value: V, size: int, *, ttl: float | None = None) -> bool:
        """Store ``value`` (``size`` bytes); False when it cannot fit at all."""
        if size > self.max_bytes:
            with self._lock:
                self.stats.rejected += 1
            return False
        with self._lock:
            if key in self._items:
                self._drop(key)
            expiry = float("inf") if ttl is None else self._clock() + ttl
            self._items[key] = (value, size, expiry)
            self.stats.bytes += size
            self.stats.stored += 1
            self._shrink()
            self.stats.entries = len(self._items)
            return True

    def __contains__(self, key: K) -> bool:
        with self._lock:
            item = self._items.get(key)
            return item is not None and item[2] > self._clock()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.stats.bytes = self.stats.entries = 0

    def _shrink(self) -> None:
        if self.stats.bytes <= self.max_bytes:
            return
        now = self._clock()
        for key in [k for k, (_, _, expiry) in self._items.items() if expiry <= now]:
            self._drop(key)
            self.stats.expirations += 1
        while self.stats.bytes > self.max_bytes:
            key = next(iter(self._items))
            self._drop(key)
            self.stats.evictions += 1

    def _drop(self, key: K) -> None:
        _, size, _ = self._items.pop(key)
        self.stats.bytes -= size
        self.stats.entries = len(self._items)
