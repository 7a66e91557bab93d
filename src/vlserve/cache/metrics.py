"""Every cache's counters on ``/metrics``, read at each scrape (``vlserve_cache_*{cache, engine}``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlserve.cache.lru import CacheStats


@runtime_checkable
class CacheOwner(Protocol):
    """Engines with caches of their own (the embedded engine's media and encoder caches)."""

    def cache_stats(self) -> list[CacheStats]: ...


_COUNTERS = (
    ("hits", "Lookups answered from the cache"),
    ("misses", "Lookups the cache could not answer"),
    ("stored", "Entries written"),
    ("evictions", "Entries pushed out by the byte bound"),
    ("expirations", "Entries dropped after their time to live"),
    ("rejected", "Values too large to store"),
    ("errors", "Backend failures (answered as misses)"),
)


class CacheCollector(Collector):
    """``sources()`` yields ``(engine, stats)``: engine "" for the service's own caches."""

    def __init__(self, sources: Callable[[], Iterable[tuple[str, CacheStats]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        labels = ["cache", "engine"]
        counters = {name: CounterMetricFamily(f"vlserve_cache_{name}", text, labels=labels) for name, text in _COUNTERS}
        held = GaugeMetricFamily("vlserve_cache_bytes", "Bytes held by the cache", labels=labels)
        entries = GaugeMetricFamily("vlserve_cache_entries", "Entries held by the cache", labels=labels)
        capacity = GaugeMetricFamily("vlserve_cache_capacity_bytes", "The cache's byte bound", labels=labels)
        for engine, stats in self.sources():
            values = [stats.name, engine]
            for name, family in counters.items():
                family.add_metric(values, getattr(stats, name))
            held.add_metric(values, stats.bytes)
            entries.add_metric(values, stats.entries)
            if stats.capacity:
                capacity.add_metric(values, stats.capacity)
        yield from (*counters.values(), held, entries, capacity)
