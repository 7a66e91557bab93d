"""ByteLRU: the byte bound, least-recently-used order, time to live, and the counters."""

from __future__ import annotations

from vlserve.cache import ByteLRU


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_least_recently_used_go_first_when_bytes_run_out() -> None:
    lru: ByteLRU[str, str] = ByteLRU("t", 100)
    assert lru.put("a", "A", 40) and lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # a is now the most recent
    assert lru.put("c", "C", 40)  # 120 > 100: b goes
    assert lru.get("b") is None and lru.get("a") == "A" and lru.get("c") == "C"
    assert (lru.stats.bytes, lru.stats.entries, lru.stats.evictions) == (80, 2, 1)
    assert (lru.stats.hits, lru.stats.misses, lru.stats.stored) == (3, 1, 3)


def test_a_value_larger_than_the_bound_is_not_stored() -> None:
    lru: ByteLRU[str, str] = ByteLRU("t", 100)
    lru.put("a", "A", 60)
    assert not lru.put("big", "X", 101)
    assert lru.get("a") == "A" and lru.stats.rejected == 1 and lru.stats.bytes == 60


def test_replacing_a_key_counts_its_bytes_once() -> None:
    lru: ByteLRU[str, str] = ByteLRU("t", 100)
    lru.put("a", "A", 60)
    lru.put("a", "A2", 70)
    assert lru.get("a") == "A2" and lru.stats.bytes == 70 and lru.stats.entries == 1


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    lru: ByteLRU[str, str] = ByteLRU("t", 100, clock=clock)
    lru.put("a", "A", 10, ttl=5)
    lru.put("b", "B", 10)  # no TTL
    clock.now = 4.9
    assert lru.get("a") == "A"
    clock.now = 5.0
    assert lru.get("a") is None and "a" not in lru
    assert lru.get("b") == "B"
    assert lru.stats.expirations == 1 and lru.stats.bytes == 10


def test_expired_entries_make_room_before_live_ones() -> None:
    clock = Clock()
    lru: ByteLRU[str, str] = ByteLRU("t", 100, clock=clock)
    lru.put("old", "O", 50, ttl=1)
    lru.put("live", "L", 40)
    clock.now = 2
    lru.put("new", "N", 50)
    assert lru.get("live") == "L" and lru.get("new") == "N"
    assert lru.stats.evictions == 0 and lru.stats.expirations == 1


def test_a_zero_bound_stores_nothing() -> None:
    lru: ByteLRU[str, str] = ByteLRU("t", 0)
    assert not lru.enabled and not lru.put("a", "A", 1) and lru.get("a") is None
