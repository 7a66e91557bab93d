"""Outbound fetch limits against real loopback servers: slow bodies, one host at a time, request budgets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.inputs.helpers import GuardBackend, LoopbackServer, StubResolver
from vlserve.errors import FetchError, PayloadTooLargeError, TooManyInputsError
from vlserve.inputs import FetchBudget, Fetcher, FetchPolicy, load_source


@pytest.fixture(scope="module")
def other_host() -> Iterator[LoopbackServer]:
    """A second server on another loopback address: another host as far as the fetcher knows."""
    with LoopbackServer(bind="127.0.0.2") as running:
        yield running


def _fetcher(policy: FetchPolicy, **kwargs: object) -> Fetcher:
    return Fetcher(policy, resolver=StubResolver(), network_backend=GuardBackend(), **kwargs)  # type: ignore[arg-type]


def test_a_trickle_below_the_minimum_rate_is_cut_off_early(server: LoopbackServer) -> None:
    # 200 bytes/s would take the whole 30 s deadline; the rate floor ends it after its grace period.
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), total_timeout=30, read_timeout=0.5, min_bytes_per_second=1000)

    async def main() -> None:
        async with _fetcher(policy) as fetcher:
            await fetcher.fetch(server.url("/trickle?n=10&every=0.05"))

    started = time.monotonic()
    with pytest.raises(FetchError, match="slower than the 1000 bytes/s minimum") as info:
        asyncio.run(main())
    assert info.value.code == 1007
    assert time.monotonic() - started < 5


def test_a_silent_server_is_cut_off_by_the_read_timeout(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), total_timeout=30, read_timeout=0.5)

    async def main() -> None:
        async with _fetcher(policy) as fetcher:
            await fetcher.fetch(server.url("/stall?seconds=20"))

    started = time.monotonic()
    with pytest.raises(FetchError, match="Timed out"):
        asyncio.run(main())
    assert time.monotonic() - started < 5


def test_the_total_deadline_bounds_a_trickle_that_keeps_above_the_floor(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), total_timeout=1.0, read_timeout=0.5, min_bytes_per_second=10)

    async def main() -> None:
        async with _fetcher(policy) as fetcher:
            await fetcher.fetch(server.url("/trickle?n=100&every=0.01"))

    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than the 1 s limit"):
        asyncio.run(main())
    assert time.monotonic() - started < 4


def test_a_slow_host_cannot_hold_the_whole_connection_pool(server: LoopbackServer, other_host: LoopbackServer) -> None:
    # Three connections in all; one host may use two. Three stalled fetches to the slow host leave
    # one connection for everybody else, so another host's image arrives at once.
    policy = FetchPolicy(allow_hosts=("127.0.0.1", "127.0.0.2"), total_timeout=8, read_timeout=6, max_per_host=2)

    async def main() -> None:
        async with _fetcher(policy, max_connections=3) as fetcher:
            slow = [asyncio.ensure_future(fetcher.fetch(server.url("/stall?seconds=6"))) for _ in range(3)]
            await asyncio.sleep(0.3)
            image = await asyncio.wait_for(fetcher.fetch(other_host.url("/image")), 3)
            assert image.content_type == "image/png"
            assert not any(task.done() for task in slow)
            for task in slow:
                task.cancel()
            await asyncio.gather(*slow, return_exceptions=True)

    asyncio.run(main())


def test_request_budget_counts_urls_including_redirect_hops(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",))

    async def main() -> None:
        async with _fetcher(policy) as fetcher:
            budget = FetchBudget(max_fetches=4, max_bytes=1 << 20)
            await fetcher.fetch(server.url("/redirect/2"), budget=budget)  # /redirect/2, /redirect/1, /image
            assert budget.fetches == 3
            with pytest.raises(TooManyInputsError) as info:
                await fetcher.fetch(server.url("/redirect/2"), budget=budget)
            assert info.value.code == 1006

    asyncio.run(main())


def test_request_budget_counts_bytes_across_fetches(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",))

    async def main() -> None:
        async with _fetcher(policy) as fetcher:
            budget = FetchBudget(max_fetches=10, max_bytes=1000)
            source = await load_source(server.url("/bytes?n=600"), fetcher=fetcher, local_root=None,
                                       max_bytes=10_000, budget=budget)
            assert len(source.data) == 600 and budget.bytes == 600
            for path in ("/bytes?n=600", "/stream?n=600"):  # declared length refused up front; undeclared cut off
                with pytest.raises(PayloadTooLargeError, match="per request") as info:
                    await fetcher.fetch(server.url(path), budget=budget)
                assert info.value.code == 1005

    asyncio.run(main())


def test_many_names_for_one_slow_server_share_its_slots(server: LoopbackServer, other_host: LoopbackServer) -> None:
    # Three names resolving to the one slow server count as one host: the third waits, so the
    # pool's last connection stays free for another server.
    names = {f"slow{k}.example": ["127.0.0.1"] for k in range(3)}
    resolver = StubResolver({**names, "images.example": ["127.0.0.2"]})
    policy = FetchPolicy(allow_hosts=("127.0.0.1", "127.0.0.2"), total_timeout=8, read_timeout=6, max_per_host=2)

    async def main() -> None:
        async with Fetcher(policy, resolver=resolver, network_backend=GuardBackend(), max_connections=3) as fetcher:
            slow = [asyncio.ensure_future(fetcher.fetch(f"http://{name}:{server.port}/stall?seconds=6"))
                    for name in names]
            await asyncio.sleep(0.3)
            image = await asyncio.wait_for(fetcher.fetch(f"http://images.example:{other_host.port}/image"), 3)
            assert image.content_type == "image/png"
            for task in slow:
                task.cancel()
            await asyncio.gather(*slow, return_exceptions=True)

    asyncio.run(main())
