"""Following a job as it runs (``GET /jobs/{id}/events``): its progress as it moves, then its outcome.

The job's state lives in the job store, which a worker in any replica updates (progress travels
with the worker's heartbeats), so a stream follows it by reading the job's summary (no request or
result bodies) every ``jobs.events_poll_interval`` seconds and reporting each change; this works the
same with SQLite and Redis, and whichever replica runs the job. Once the job is finished the whole
job is read once more for its result or error and the stream ends.

Streams are bounded: at most ``jobs.events_max_streams_per_key`` per key (4029) and
``jobs.events_max_streams`` in all (2001) open on one replica, each open at most
``jobs.events_max_seconds`` (then an error, 4008: reconnect to go on), and a keep-alive comment
every ``jobs.events_keepalive_seconds`` without an event so proxies do not close an idle one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal

from vlserve.config import Jobs
from vlserve.errors import OverloadedError, RateLimitError, RequestTimeoutError
from vlserve.jobs import Job, JobStore, JobSummary
from vlserve.jobs.model import TERMINAL_STATUSES

__all__ = ["EventStreams", "JobUpdate", "follow_job"]


class EventStreams:
    """The event streams open on this replica, per owner and in all; one past a cap is refused."""

    def __init__(self, settings: Jobs) -> None:
        self.per_key = settings.events_max_streams_per_key
        self.total = settings.events_max_streams
        self._open: dict[str, int] = {}

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def open(self, owner: str) -> Callable[[], None]:
        """Take a slot for ``owner``; returns the function that gives it back (safe to call twice)."""
        if self._open.get(owner, 0) >= self.per_key:
            raise RateLimitError(f"this key already has {self.per_key} job event streams open on this server "
                                 "(jobs.events_max_streams_per_key); close one or poll GET /jobs/{id}",
                                 retry_after=5.0)
        if self.open_streams >= self.total:
            raise OverloadedError("too many job event streams are open on this server (jobs.events_max_streams); "
                                  "poll GET /jobs/{id} or retry later", retry_after=5.0)
        self._open[owner] = self._open.get(owner, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open[owner] - 1
            if left:
                self._open[owner] = left
            else:
                del self._open[owner]

        return release


@dataclass(frozen=True)
class JobUpdate:
    """One thing to tell the follower: the job moved (``progress``: its summary), it ended
    (``final``: the whole job), or nothing happened for a while (``keepalive``)."""

    kind: Literal["progress", "final", "keepalive"]
    job: JobSummary | Job | None = None


async def follow_job(store: JobStore, first: JobSummary, owner: str, settings: Jobs, *,
                     clock: Callable[[], float] = time.monotonic) -> AsyncGenerator[JobUpdate, None]:
    """Updates of the job ``first`` (read by the caller, so that a missing job is refused before any
    event), starting with its current state; ends after ``final``. Raises ``RequestTimeoutError``
    past ``settings.events_max_seconds`` and ``NotFoundError`` if the job is deleted meanwhile."""
    started = last_sent = clock()
    current = first
    yield JobUpdate("progress", current)
    seen = (current.status, current.progress, current.attempts)
    while True:
        if current.status in TERMINAL_STATUSES:
            yield JobUpdate("final", await store.get(current.id, owner))
            return
        await asyncio.sleep(settings.events_poll_interval)
        now = clock()
        if now - started >= settings.events_max_seconds:
            raise RequestTimeoutError(f"the event stream was open for {settings.events_max_seconds:g} s "
                                      "(jobs.events_max_seconds); reconnect to follow the job further")
        current = await store.summary(current.id, owner)
        state = (current.status, current.progress, current.attempts)
        if state != seen and current.status not in TERMINAL_STATUSES:
            seen = state
            last_sent = now
            yield JobUpdate("progress", current)
        elif now - last_sent >= settings.events_keepalive_seconds:
            last_sent = now
            yield JobUpdate("keepalive")
