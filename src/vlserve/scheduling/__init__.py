"""Scheduling: lanes with admission control, and the engines they run on."""

from __future__ import annotations

from vlserve.config import Scheduling
from vlserve.errors import RequestError
from vlserve.runtime.protocol import Engine
from vlserve.scheduling.budget import Budget, Budgets, Cost
from vlserve.scheduling.lanes import Lane, Ticket
from vlserve.scheduling.metrics import Metrics


class Scheduler:
    """The lanes of one server, built from settings and a name → engine map."""

    def __init__(self, settings: Scheduling, engines: dict[str, Engine], metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.engines = engines
        self.metrics.watch_engines(engines)
        self.lanes: dict[str, Lane] = {}
        self.budgets = Budgets(
            Budget("server", memory_bytes=settings.media_memory_bytes, visual_tokens=settings.visual_tokens),
            {name: Budget(f"{name} lane", memory_bytes=lane.media_memory_bytes, visual_tokens=lane.visual_tokens)
             for name, lane in settings.lanes.items()},
            client_share=settings.client_budget_share)
        self.metrics.watch_budgets(self.budgets)
        for name, lane in settings.lanes.items():
            if lane.model not in engines:
                raise RequestError(f"lane {name!r} names model {lane.model!r}, which is not configured")
            if lane.fallback is not None and lane.fallback not in engines:
                raise RequestError(f"lane {name!r} names fallback {lane.fallback!r}, which is not configured")
            fallback = engines[lane.fallback] if lane.fallback else None
            self.lanes[name] = Lane(name, lane, engines[lane.model], fallback, self.metrics, self.budgets)

    def lane(self, name: str) -> Lane:
        # A task's lane that the operator removed falls back to the first configured lane.
        return self.lanes.get(name) or next(iter(self.lanes.values()))

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    @property
    def accepting(self) -> bool:
        return any(lane.status()["accepting"] for lane in self.lanes.values())


__all__ = ["Budget", "Budgets", "Cost", "Lane", "Metrics", "Scheduler", "Ticket"]
