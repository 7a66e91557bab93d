"""Durable asynchronous jobs: storage and the worker loop (no HTTP here).

    JobStore (protocol)         submit / get / list / cancel      (the API side)
    │                           claim / heartbeat / complete      (the worker side)
    │                           requeue_expired / counts / stored_bytes / purge
    ├── SQLiteJobStore(path)    default: one embedded file, WAL, safe across processes
    └── RedisJobStore(url)      shared by replicas; every state change is one Lua script
    Worker(store, handler)      claims under a lease, heartbeats, completes exactly once

Execution is at-least-once, completion exactly-once: see docs/jobs.md for the model.
``RedisJobStore`` needs redis-py, imported only when one is made.
"""

from vlserve.jobs.model import (
    ANONYMOUS_OWNER,
    DEFAULT_MAX_ATTEMPTS,
    MAX_LIST_LIMIT,
    MAX_PRIORITY,
    MIN_PRIORITY,
    STATUSES,
    TERMINAL_STATUSES,
    Job,
    JobStatus,
    JobSummary,
    owner_of,
)
from vlserve.jobs.redis import RedisJobStore
from vlserve.jobs.sqlite import SQLiteJobStore
from vlserve.jobs.store import JobStore
from vlserve.jobs.worker import INTERNAL_ERROR, Handler, Worker, report_progress

__all__ = [
    "ANONYMOUS_OWNER",
    "DEFAULT_MAX_ATTEMPTS",
    "INTERNAL_ERROR",
    "MAX_LIST_LIMIT",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Handler",
    "Job",
    "JobStatus",
    "JobStore",
    "JobSummary",
    "RedisJobStore",
    "SQLiteJobStore",
    "Worker",
    "owner_of",
    "report_progress",
]
