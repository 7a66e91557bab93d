"""Budgets of what requests cost, not how many there are: memory for media and visual tokens.

Counting requests is not enough: a 100-byte PNG may declare 8000×8000 pixels and a few-KB PDF
may render to gigabytes. After its inputs' headers are read and before anything is decoded, a
request *reserves* its estimated cost (:class:`Cost`) in its lane's budget and in the server's
global one, and gives it back when it ends. A request larger than a budget on its own is refused
at once (the caller's to fix: 1005); one that fits but finds the budget taken by others waits its
turn, up to the lane's ``queue_timeout``, and is then refused with 2001 and ``Retry-After``.

One client (:mod:`vlserve.scheduling.fairness`) may hold at most ``client_share`` of each budget
while it has something reserved: its next request waits behind its own, and requests of other
clients in the same lane go past it. A client with nothing reserved may always take a request
that fits the budgets, so no request is too large for its client alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from vlserve.errors import OverloadedError, PayloadTooLargeError
from vlserve.scheduling.fairness import ANONYMOUS


@dataclass(frozen=True)
class Cost:
    """What preparing and running one request costs: peak bytes of its media work, and the visual
    tokens (image, page and video-frame tokens) the model will read."""

    memory_bytes: int = 0
    visual_tokens: int = 0

    KINDS: ClassVar[tuple[str, ...]] = ("memory_bytes", "visual_tokens")

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.memory_bytes + other.memory_bytes, self.visual_tokens + other.visual_tokens)

    def __getitem__(self, kind: str) -> int:
        return int(getattr(self, kind))


class Budget:
    """Capacities per kind (None: unbounded); reservations are granted in arrival order, so a large
    request is not starved by a stream of small ones."""

    def __init__(self, name: str, *, memory_bytes: int | None, visual_tokens: int | None) -> None:
        self.name = name
        self.capacity = {"memory_bytes": memory_bytes, "visual_tokens": visual_tokens}
        self.used = {"memory_bytes": 0, "visual_tokens": 0}

    def too_large(self, cost: Cost) -> str | None:
        """Why ``cost`` can never fit, or None."""
        for kind in Cost.KINDS:
            cap = self.capacity[kind]
            if cap is not None and cost[kind] > cap:
                what = "bytes of memory to prepare its media" if kind == "memory_bytes" else "visual tokens"
                return f"needs {cost[kind]:,} {what}; the {self.name} budget is {cap:,}"
        return None

    def fits(self, cost: Cost) -> bool:
        return all(cap is None or self.used[kind] + cost[kind] <= cap for kind, cap in self.capacity.items())

    def take(self, cost: Cost) -> None:
        for kind in Cost.KINDS:
            self.used[kind] += cost[kind]

    def give_back(self, cost: Cost) -> None:
        for kind in Cost.KINDS:
            self.used[kind] = max(0, self.used[kind] - cost[kind])


class Budgets:
    """The server's global budget and one per lane, with one queue of waiting reservations.

    Waiting requests are granted in arrival order within a lane (a large request is not starved
    by a stream of small ones), while a lane whose own budget is full never holds up another."""

    def __init__(self, global_budget: Budget, lanes: dict[str, Budget], *, client_share: float = 1.0) -> None:
        self.global_budget = global_budget
        self.lanes = lanes
        self.client_share = client_share
        self.by_client: dict[str, Cost] = {}  # reserved per client (only clients holding something)
        self._waiters: list[tuple[str, Cost, asyncio.Future[None], str]] = []

    async def reserve(self, lane: str, cost: Cost, *, timeout: float, client: str = ANONYMOUS) -> Reservation:
        """Take ``cost`` from ``lane``'s budget and the global one for ``client``, waiting up to
        ``timeout`` seconds.

        Raises :class:`PayloadTooLargeError` (1005) when ``cost`` exceeds a budget on its own and
        :class:`OverloadedError` (2001) when room does not come in time."""
        for budget in (self.lanes[lane], self.global_budget):
            reason = budget.too_large(cost)
            if reason is not None:
                raise PayloadTooLargeError(f"this request {reason}: send smaller or fewer images, pages or "
                                           "video seconds", budget=budget.name)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((lane, cost, turn, client))
        self._wake()  # granted at once when nobody it must respect is waiting and it fits
        if turn.done():
            return Reservation(self, lane, cost, client)
        try:
            await asyncio.wait_for(asyncio.shield(turn), timeout)
        except TimeoutError:
            if turn.done() and not turn.cancelled():  # granted just as time ran out: keep it
                return Reservation(self, lane, cost, client)
            self._forget(turn)
            raise OverloadedError("the server is busy preparing other requests' media; retry shortly",
                                  retry_after=max(1.0, min(timeout, 30.0) / 4)) from None
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release(lane, cost, client)
            else:
                self._forget(turn)
            raise
        return Reservation(self, lane, cost, client)

    def usage(self) -> dict[str, dict[str, int]]:
        """Reserved amounts per budget name and kind (for metrics)."""
        return {b.name: dict(b.used) for b in (self.global_budget, *self.lanes.values())}

    def _fits(self, lane: str, cost: Cost) -> bool:
        return self.lanes[lane].fits(cost) and self.global_budget.fits(cost)

    def _within_share(self, lane: str, cost: Cost, client: str) -> bool:
        """Whether ``client`` may take ``cost`` now: nothing reserved yet, or its total stays within
        ``client_share`` of both budgets."""
        held = self.by_client.get(client)
        if held is None or self.client_share >= 1.0:
            return True
        total = held + cost
        for budget in (self.lanes[lane], self.global_budget):
            for kind in Cost.KINDS:
                cap = budget.capacity[kind]
                if cap is not None and total[kind] > cap * self.client_share:
                    return False
        return True

    def _take(self, lane: str, cost: Cost, client: str) -> None:
        self.lanes[lane].take(cost)
        self.global_budget.take(cost)
        self.by_client[client] = self.by_client.get(client, Cost()) + cost

    def _forget(self, turn: asyncio.Future[None]) -> None:
        turn.cancel()
        self._waiters = [w for w in self._waiters if w[2] is not turn]
        self._wake()

    def _release(self, lane: str, cost: Cost, client: str = ANONYMOUS) -> None:
        self.lanes[lane].give_back(cost)
        self.global_budget.give_back(cost)
        held = self.by_client.pop(client, Cost())
        left = Cost(max(0, held.memory_bytes - cost.memory_bytes), max(0, held.visual_tokens - cost.visual_tokens))
        if left != Cost():
            self.by_client[client] = left
        self._wake()

    def _wake(self) -> None:
        # Lanes whose first waiter does not fit yet: later ones keep their turn (a large request is
        # not starved). Clients at their share: their later requests wait, other clients' go past.
        blocked: set[str] = set()
        capped: set[str] = set()
        waiting = []
        for lane, cost, turn, client in self._waiters:
            if turn.done():
                continue
            if lane not in blocked and client not in capped:
                if not self._fits(lane, cost):
                    blocked.add(lane)
                elif not self._within_share(lane, cost, client):
                    capped.add(client)
                else:
                    self._take(lane, cost, client)
                    turn.set_result(None)
                    continue
            waiting.append((lane, cost, turn, client))
        self._waiters = waiting


class Reservation:
    """A granted reservation; :meth:`release` gives it back (idempotent)."""

    def __init__(self, owner: Budgets, lane: str, cost: Cost, client: str = ANONYMOUS) -> None:
        self.owner = owner
        self.lane = lane
        self.cost = cost
        self.client = client
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner._release(self.lane, self.cost, self.client)
