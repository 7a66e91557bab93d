"""Prometheus metrics of the service, in a registry per application."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlserve.runtime.protocol import BatchStats, Engine

if TYPE_CHECKING:
    from vlserve.scheduling.budget import Budgets

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("vlserve_queue_depth", "Admitted requests not yet running", ["lane"], registry=r)
        self.running = Gauge("vlserve_running_requests", "Requests generating now", ["lane"], registry=r)
        self.admitted = Counter("vlserve_admitted", "Requests admitted to their lane", ["lane"], registry=r)
        self.degraded = Counter("vlserve_degraded", "Requests sent to the fallback model", ["lane"], registry=r)
        self.refused = Counter("vlserve_refused", "Requests refused with 2001", ["lane"], registry=r)
        self.ttft = Histogram("vlserve_time_to_first_token_seconds", "Time to first token", ["lane"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("vlserve_request_latency_seconds", "End-to-end request latency",
                                 ["lane", "task"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Histogram("vlserve_tokens", "Tokens per request", ["lane", "kind"], buckets=TOKEN_BUCKETS,
                                registry=r)
        self.errors = Counter("vlserve_errors", "Requests that ended in an error, by code", ["code"], registry=r)
        self.jobs = Gauge("vlserve_jobs", "Async jobs by lane and status", ["lane", "status"], registry=r)

    def watch_budgets(self, budgets: Budgets) -> None:
        """Report what the cost budgets have reserved at every scrape."""
        self.registry.register(_BudgetCollector(budgets))

    def watch_engines(self, engines: Mapping[str, Engine]) -> None:
        """Report the batches of ``engines`` (those that batch) at every scrape."""
        self.registry.register(_BatchCollector(engines))


class _BatchCollector(Collector):
    def __init__(self, engines: Mapping[str, Engine]) -> None:
        self.engines = {name: e for name, e in engines.items() if isinstance(e, BatchStats)}

    def collect(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily("vlserve_batch_rows", "Requests decoding in the running batch", labels=["engine"])
        waiting = GaugeMetricFamily("vlserve_batch_waiting", "Prepared requests waiting to join the batch",
                                    labels=["engine"])
        steps = CounterMetricFamily("vlserve_decode_steps", "Decode steps run", labels=["engine"])
        joined = CounterMetricFamily("vlserve_joined_running", "Requests that joined a batch already generating",
                                     labels=["engine"])
        for name, engine in self.engines.items():
            stats = engine.batch_stats()
            rows.add_metric([name], stats["rows"])
            waiting.add_metric([name], stats["waiting"])
            steps.add_metric([name], stats["steps"])
            joined.add_metric([name], stats["joined_running"])
        yield from (rows, waiting, steps, joined)


class _BudgetCollector(Collector):
    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("vlserve_budget_used", "Reserved by requests in flight (estimated from headers)",
                                 labels=["budget", "kind"])
        capacity = GaugeMetricFamily("vlserve_budget_capacity", "Budget size (absent: unbounded)",
                                     labels=["budget", "kind"])
        for budget in (self.budgets.global_budget, *self.budgets.lanes.values()):
            for kind, value in budget.used.items():
                used.add_metric([budget.name, kind], value)
                cap = budget.capacity[kind]
                if cap is not None:
                    capacity.add_metric([budget.name, kind], cap)
        yield from (used, capacity)
