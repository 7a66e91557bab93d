"""Prometheus metrics of the service, in a registry per application."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
