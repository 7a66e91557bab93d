"""Isolated lanes with admission control before any work.

A request reserves a place in its lane *before* its media is fetched or decoded, so a full lane
costs a refused request microseconds, not seconds of wasted preprocessing. A lane holds at most
``concurrency`` running requests plus ``queue_size`` others (preparing or waiting). When full,
the request is sent to the lane's fallback engine (answered with code 2001 and
``degraded: true``) while fewer than ``fallback_capacity`` degraded requests are in flight, or
else refused with 2001 and ``Retry-After``. An engine that refuses work itself (a pool of remote
replicas, all ejected or at their limits) degrades the same way: at admission when it says so up
front (``accepting()``), or when its stream fails with 2001 or 5007 before the first event.
Waiting requests run in priority order (higher first, then the client with the fewest requests
in the lane, then arrival) and give up after ``queue_timeout``. One client holds at most
``max_client_share`` of a lane's places (see :mod:`vlserve.scheduling.fairness`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from vlserve.config import LaneSettings
from vlserve.errors import OverloadedError, UpstreamUnavailableError
from vlserve.runtime.protocol import Engine, GenerationRequest, StreamEvent
from vlserve.scheduling.budget import Budget, Budgets, Cost, Reservation
from vlserve.scheduling.fairness import ANONYMOUS
from vlserve.scheduling.metrics import Metrics

Decision = Literal["run", "degrade"]


@dataclass
class Ticket:
    """A place in a lane, taken at admission and given back when the request ends."""

    lane: Lane
    decision: Decision
    engine: Engine
    priority: int
    admitted_at: float
    released: bool = False
    reservation: Reservation | None = None
    client: str = ANONYMOUS  # who sent it (scheduling.fairness): shares of places, slots and budgets

    async def reserve(self, cost: Cost) -> None:
        """Take ``cost`` from the lane's and the server's budgets (1005 if it can never fit; waits
        up to the lane's ``queue_timeout`` for room, then 2001); given back by :meth:`release`.
        A second call replaces the first reservation (given back first, so that requests growing
        their reservation never wait on each other)."""
        lane = self.lane
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None
        self.reservation = await lane.budgets.reserve(lane.name, cost, timeout=lane.settings.queue_timeout,
                                                      client=self.client)
        if self.released:  # the request ended while it waited
            self.reservation.release()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Wait for a running slot (degraded requests run on the fallback at once)."""
        if self.decision == "degrade":
            yield
            return
        await self.lane.wait_for_slot(self)
        try:
            yield
        finally:
            self.lane.slot_done()

    async def stream(self, generation: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        """The engine's events while holding a running slot; the lane place is given back at the end
        (also when the consumer stops early, which cancels the generation). An engine refusing the
        request before its first event (2001, 5007: a pool with no replica to take it) hands it to
        the fallback when the lane can degrade."""
        try:
            if self.decision == "run":
                asked = started = False  # a wait for a slot that times out stays a 2001 of this lane
                try:
                    async with self.running():
                        asked = True
                        async with aclosing(self.engine.stream(generation)) as events:
                            async for event in events:
                                started = True
                                yield event
                    return
                except (OverloadedError, UpstreamUnavailableError):
                    if not asked or started or not self.lane.degrade(self):
                        raise
            async with aclosing(self.engine.stream(generation)) as events:
                async for event in events:
                    yield event
        finally:
            self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            if self.reservation is not None:
                self.reservation.release()
            self.lane.leave(self)


class Lane:
    def __init__(self, name: str, settings: LaneSettings, engine: Engine, fallback: Engine | None,
                 metrics: Metrics, budgets: Budgets | None = None) -> None:
        self.name = name
        self.budgets = budgets or Budgets(Budget("server", memory_bytes=None, visual_tokens=None),
                                          {name: Budget(f"{name} lane", memory_bytes=None, visual_tokens=None)})
        self.settings = settings
        self.engine = engine
        self.fallback = fallback
        self.metrics = metrics
        self.occupancy = 0  # admitted requests not yet finished (preparing, waiting or running)
        self.running = 0
        self.degraded = 0  # requests of this lane in flight on the fallback
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self.clients: Counter[str] = Counter()  # places held per client (degraded requests not counted)

    @property
    def capacity(self) -> int:
        return self.settings.concurrency + self.settings.queue_size

    @property
    def full(self) -> bool:
        return self.occupancy >= self.capacity

    @property
    def client_places(self) -> int:
        """Places (running and queued) one client may hold: ``max_client_share`` of the capacity, at least 1."""
        return max(1, math.floor(self.capacity * self.settings.max_client_share))

    @property
    def can_degrade(self) -> bool:
        return self.fallback is not None and self.degraded < self.settings.fallback_capacity

    def admit(self, priority: int = 0, client: str = ANONYMOUS) -> Ticket:
        """Decide at once: run here, degrade to the fallback, or raise 2001. A lane with room whose
        engine refuses work now (a pool with no replica free) degrades when it can. A client holding
        its share of the places (``client_places``) finds the lane full while others still get in."""
        now = time.perf_counter()
        over_share = self.clients[client] >= self.client_places
        if over_share and not self.can_degrade:
            self.metrics.refused.labels(self.name).inc()
            raise OverloadedError(
                f"this client already has {self.clients[client]} requests in the {self.name} lane, the most one "
                "client may have; retry when some have finished",
                retry_after=self._retry_after(), lane=self.name, per_client=self.client_places,
            )
        if not self.full and not over_share and (_accepting(self.engine) or not self.can_degrade):
            self.occupancy += 1
            self.clients[client] += 1
            self._gauges()
            self.metrics.admitted.labels(self.name).inc()
            return Ticket(self, "run", self.engine, priority, now, client=client)
        if self.can_degrade:
            self.degraded += 1
            self.metrics.degraded.labels(self.name).inc()
            return Ticket(self, "degrade", self.fallback, priority, now, client=client)  # type: ignore[arg-type]
        self.metrics.refused.labels(self.name).inc()
        raise OverloadedError(
            f"the {self.name} lane is full ({self.capacity} requests); retry shortly",
            retry_after=self._retry_after(), lane=self.name,
        )

    def _retry_after(self) -> float:
        # A rough drain time: each running slot frees in about a second on typical requests.
        return max(1.0, self.occupancy / max(1, self.settings.concurrency))

    def degrade(self, ticket: Ticket) -> bool:
        """Move a running ticket whose engine refused it to the fallback; False when it cannot go."""
        if ticket.decision != "run" or ticket.released or not self.can_degrade:
            return False
        self.occupancy -= 1
        self._forget_client(ticket.client)
        self.degraded += 1
        self._gauges()
        self.metrics.degraded.labels(self.name).inc()
        ticket.decision, ticket.engine = "degrade", self.fallback  # type: ignore[assignment]
        return True

    async def wait_for_slot(self, ticket: Ticket) -> None:
        if self.running < self.settings.concurrency and not self._waiters:
            self._grant()
            return
        waiter = _Waiter(-ticket.priority, next(self._seq), ticket.client,
                         asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._gauges()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.turn), self.settings.queue_timeout)
        except TimeoutError:
            if waiter.turn.done():  # the slot arrived just as we gave up: hand it on
                self.slot_done()
            else:
                waiter.turn.cancel()
                self._waiters.remove(waiter)
            self._gauges()
            raise OverloadedError(
                f"waited {self.settings.queue_timeout:g} s in the {self.name} lane without a free slot",
                retry_after=self._retry_after(), lane=self.name,
            ) from None
        except asyncio.CancelledError:
            if waiter.turn.done() and not waiter.turn.cancelled():
                self.slot_done()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def slot_done(self) -> None:
        """A running slot is free: it passes straight to the next waiter (highest priority,
        then the client with the fewest requests in this lane, then arrival), or back to the lane."""
        self.running -= 1
        while self._waiters:
            waiter = min(self._waiters, key=lambda w: (w.rank, self.clients[w.client], w.seq))
            self._waiters.remove(waiter)
            if not waiter.turn.done():
                self._grant()
                waiter.turn.set_result(None)
                return
        self._gauges()

    def _grant(self) -> None:
        self.running += 1
        self._gauges()

    def _forget_client(self, client: str) -> None:
        self.clients[client] -= 1
        if self.clients[client] <= 0:
            del self.clients[client]  # clients come and go: keep only those holding a place

    def leave(self, ticket: Ticket) -> None:
        if ticket.decision == "degrade":
            self.degraded -= 1
            return
        self.occupancy -= 1
        self._forget_client(ticket.client)
        self._gauges()

    def _gauges(self) -> None:
        self.metrics.queue_depth.labels(self.name).set(self.occupancy - self.running)
        self.metrics.running.labels(self.name).set(self.running)

    def status(self) -> dict[str, object]:
        return {"occupancy": self.occupancy, "running": self.running, "waiting": len(self._waiters),
                "capacity": self.capacity, "degraded": self.degraded,
                "accepting": not self.full or self.can_degrade}


@dataclass(eq=False)
class _Waiter:
    """A request waiting for a running slot."""

    rank: int  # minus its priority: lower goes first
    seq: int  # arrival order
    client: str
    turn: asyncio.Future[None]


def _accepting(engine: Engine) -> bool:
    """Whether ``engine`` would take a request now, for engines that can tell up front (pools of
    remote replicas: ``accepting()``); others always would."""
    accepting = getattr(engine, "accepting", None)
    return not callable(accepting) or bool(accepting())
