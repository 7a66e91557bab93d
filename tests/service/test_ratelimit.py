"""Per-key rate limits and the wrong-key budget, in memory and shared through a real redis-server.

Two key rings on one Redis stand for two gateway replicas: a key's budget and an address's
wrong-key budget are one budget across them; with memory buckets each replica has its own (the
control). Redis unreachable: the documented fallback (this replica's buckets) or 2001, never a 500.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.jobs.helpers import free_port
from vlserve.api.app import create_app
from vlserve.config import ApiKey, Settings
from vlserve.errors import AuthError, OverloadedError, RateLimitError
from vlserve.service.auth import KeyRing, hash_key, keyring_for
from vlserve.service.ratelimit import MemoryLimiter, RedisLimiter
from vlserve.testing.fake_engine import FakeEngine
from vlserve.testing.server import serving

KEY = "vls-test-key"
KEYS = [ApiKey(id="alice", sha256=hash_key(KEY), rate_per_minute=5)]
GOOD = f"Bearer {KEY}"


def replicas(url: str, n: int = 2, **options: object) -> list[KeyRing]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    return [KeyRing(KEYS, 600, 3, limiter=RedisLimiter(url, prefix=prefix, **options))  # type: ignore[arg-type]
            for _ in range(n)]


async def outcomes(rings: list[KeyRing], n: int, authorization: str = GOOD) -> list[str]:
    """``n`` requests alternated between ``rings``: "ok", or the refusal's code."""
    seen = []
    for i in range(n):
        try:
            await rings[i % len(rings)].authenticate(authorization, "127.0.0.7")
            seen.append("ok")
        except (AuthError, RateLimitError) as err:
            seen.append(str(err.code))
    return seen


def test_a_keys_rate_holds_across_replicas(redis_url: str) -> None:
    async def main() -> None:
        rings = replicas(redis_url)
        try:
            assert await outcomes(rings, 7) == ["ok"] * 5 + ["4029"] * 2
            with pytest.raises(RateLimitError) as refused:
                await rings[1].authenticate(GOOD, "127.0.0.8")
            assert 0 < refused.value.retry_after <= 12.5  # one token of 5 a minute
        finally:
            for ring in rings:
                await ring.aclose()

    asyncio.run(main())


def test_memory_buckets_are_each_replicas_own() -> None:
    """The control: without Redis two replicas allow the key twice its rate."""
    rings = [KeyRing(KEYS, 600, 3, limiter=MemoryLimiter()) for _ in range(2)]
    assert asyncio.run(outcomes(rings, 12)) == ["ok"] * 10 + ["4029"] * 2


def test_wrong_keys_from_an_address_count_across_replicas(redis_url: str) -> None:
    async def main() -> None:
        rings = replicas(redis_url)
        try:
            # 3 wrong keys a minute: spread over both replicas, then even the right key is refused.
            assert await outcomes(rings, 4, "Bearer wrong") == ["4001"] * 3 + ["4029"]
            assert await outcomes(rings, 2) == ["4029"] * 2
            assert await outcomes(rings, 1, "") == ["4029"]  # a missing key too
            # Another address is not affected.
            assert await rings[0].authenticate(GOOD, "127.0.0.9") == "alice"
        finally:
            for ring in rings:
                await ring.aclose()

    asyncio.run(main())


def test_missing_keys_are_not_counted_as_guesses(redis_url: str) -> None:
    async def main() -> None:
        rings = replicas(redis_url)
        try:
            assert await outcomes(rings, 6, "") == ["4001"] * 6
            assert await outcomes(rings, 1) == ["ok"]
        finally:
            for ring in rings:
                await ring.aclose()

    asyncio.run(main())


def test_buckets_expire_once_full_again(redis_url: str) -> None:
    """Redis keeps only buckets in use: a bucket's key lives until it would be full again."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"

    async def main() -> None:
        ring = KeyRing([ApiKey(id="fast", sha256=hash_key(KEY), rate_per_minute=6000)], 600, 3,
                       limiter=RedisLimiter(redis_url, prefix=prefix))
        try:
            assert await ring.authenticate(GOOD, "127.0.0.7") == "fast"
        finally:
            await ring.aclose()

    asyncio.run(main())
    client = redis.Redis.from_url(redis_url)
    try:
        ttl = client.pttl(f"{prefix}key:fast")
        assert 0 < ttl <= 1010  # 1 token at 100 a second, plus a second of slack
        assert client.exists(f"{prefix}addr:127.0.0.7") == 0  # no wrong key: no address bucket
    finally:
        client.close()


def test_redis_down_falls_back_to_local_buckets() -> None:
    """Nobody listens on the port: each decision is this replica's own, and still enforced."""
    ring = KeyRing(KEYS, 600, 3, limiter=RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    try:
        assert asyncio.run(outcomes([ring], 6)) == ["ok"] * 5 + ["4029"]
    finally:
        asyncio.run(ring.aclose())


def test_redis_down_can_refuse_with_2001() -> None:
    ring = KeyRing(KEYS, 600, 3, limiter=RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5,
                                                       on_error="refuse"))

    async def main() -> None:
        with pytest.raises(OverloadedError) as refused:
            await ring.authenticate(GOOD, "127.0.0.7")
        assert refused.value.code == 2001 and refused.value.retry_after > 0
        with pytest.raises(AuthError):  # without an address there is nothing to count: no Redis needed
            await ring.authenticate("Bearer nope", None)
        await ring.aclose()

    asyncio.run(main())


def test_backend_follows_the_jobs_store_by_default(redis_url: str) -> None:
    keys = [{"id": "a", "sha256": hash_key(KEY)}]
    shared = keyring_for(Settings.model_validate({"auth": {"keys": keys},
                                                  "jobs": {"backend": "redis", "redis_url": redis_url}}))
    assert isinstance(shared.limiter, RedisLimiter)
    local = keyring_for(Settings.model_validate({"auth": {"keys": keys}}))
    assert isinstance(local.limiter, MemoryLimiter)
    forced = keyring_for(Settings.model_validate({"auth": {"keys": keys, "rate_limit_backend": "memory"},
                                                  "jobs": {"backend": "redis", "redis_url": redis_url}}))
    assert isinstance(forced.limiter, MemoryLimiter)
    asyncio.run(shared.aclose())


def test_a_gateway_with_redis_down_answers_without_a_500(tmp_path: Path) -> None:
    """Over HTTP: the rate-limit Redis is a port nobody listens on. `local` keeps serving and still
    meters each key (5 a minute: the 6th is 4029); `refuse` answers 503 with 2001 and Retry-After."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for mode, expected in (("local", [200] * 5 + [429]), ("refuse", [503] * 6)):
        settings = Settings.model_validate({
            "data_dir": str(tmp_path / mode), "expose_ui": False, "jobs": {"workers": 0},
            "auth": {"keys": [k.model_dump() for k in KEYS], "rate_limit_backend": "redis", "redis_url": dead,
                     "redis_unavailable": mode, "redis_timeout": 0.5}})
        with serving(create_app(settings, engine=FakeEngine("fake"))) as url:
            answers = [httpx.get(url + "/jobs", headers={"authorization": GOOD}, timeout=10) for _ in range(6)]
        assert [a.status_code for a in answers] == expected, [a.text for a in answers]
        assert answers[-1].json()["code"] == (4029 if mode == "local" else 2001)
        assert "retry-after" in answers[-1].headers
