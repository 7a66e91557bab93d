"""Cost budgets: reservations granted in arrival order within a lane, never across lanes' way."""

from __future__ import annotations

import asyncio

import pytest

from vlserve.errors import OverloadedError, PayloadTooLargeError
from vlserve.scheduling.budget import Budget, Budgets, Cost

MB = 1 << 20


def _budgets(server: int = 100 * MB, lane: int | None = None) -> Budgets:
    return Budgets(Budget("server", memory_bytes=server, visual_tokens=1000),
                   {name: Budget(f"{name} lane", memory_bytes=lane, visual_tokens=None) for name in ("a", "b")})


def test_a_request_larger_than_a_budget_is_refused_at_once() -> None:
    async def run() -> None:
        budgets = _budgets(lane=10 * MB)
        with pytest.raises(PayloadTooLargeError, match="a lane budget"):
            await budgets.reserve("a", Cost(11 * MB, 1), timeout=5)
        with pytest.raises(PayloadTooLargeError, match="visual tokens"):
            await budgets.reserve("b", Cost(1, 1001), timeout=5)
        assert budgets.usage()["server"] == {"memory_bytes": 0, "visual_tokens": 0}

    asyncio.run(run())


def test_waiting_reservations_are_granted_in_order_when_room_comes_back() -> None:
    async def run() -> list[str]:
        budgets = _budgets()
        order: list[str] = []
        first = await budgets.reserve("a", Cost(60 * MB), timeout=5)

        async def wait(name: str, cost: int) -> None:
            reservation = await budgets.reserve("a", Cost(cost * MB), timeout=5)
            order.append(name)
            await asyncio.sleep(0.01)
            reservation.release()

        big = asyncio.create_task(wait("big", 90))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(wait("small", 10))  # would fit now, but must not overtake "big"
        await asyncio.sleep(0.05)
        assert order == []
        first.release()
        await asyncio.gather(big, small)
        assert budgets.usage()["server"]["memory_bytes"] == 0
        return order

    assert asyncio.run(run()) == ["big", "small"]


def test_a_full_lane_does_not_hold_up_another_lane() -> None:
    async def run() -> None:
        budgets = _budgets(server=100 * MB, lane=50 * MB)
        held = await budgets.reserve("a", Cost(50 * MB), timeout=5)
        waiting = asyncio.create_task(budgets.reserve("a", Cost(10 * MB), timeout=5))
        await asyncio.sleep(0.01)
        other = await asyncio.wait_for(budgets.reserve("b", Cost(40 * MB), timeout=5), 1)
        assert not waiting.done()
        held.release()
        (await waiting).release()
        other.release()

    asyncio.run(run())


def test_room_that_never_comes_ends_in_2001_and_leaves_nothing_reserved() -> None:
    async def run() -> None:
        budgets = _budgets()
        held = await budgets.reserve("a", Cost(80 * MB), timeout=5)
        with pytest.raises(OverloadedError) as caught:
            await budgets.reserve("a", Cost(30 * MB), timeout=0.05)
        assert caught.value.retry_after >= 1
        cancelled = asyncio.create_task(budgets.reserve("b", Cost(30 * MB), timeout=5))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        held.release()
        assert budgets.usage()["server"]["memory_bytes"] == 0
        assert (await budgets.reserve("a", Cost(100 * MB), timeout=0.05)).cost.memory_bytes == 100 * MB

    asyncio.run(run())
