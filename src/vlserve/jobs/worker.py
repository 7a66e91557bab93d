"""The worker loop: claim jobs, run the handler under a lease, record exactly one outcome.

For each claimed job two tasks run side by side: the handler, and a heartbeat that extends the
lease every ``heartbeat_interval`` seconds and sends the progress the handler reported. When a
heartbeat is refused, the job is no longer ours to run: either a cancel was requested (the
handler is cancelled and the job completed as cancelled) or the lease was taken back (the
handler is cancelled and nothing is written; another worker runs the job again). A worker cut off
from the store (its heartbeats fail or hang) cancels the handler itself once a whole lease has
passed since its last heartbeat got through: by then another replica may have taken the job, and
the same job must not run to completion twice. The loop also takes back expired leases of every
worker (``requeue_expired``) every ``requeue_interval``.

Handlers run in the worker's event loop; a handler that blocks the loop also blocks its
heartbeat, so CPU-bound work belongs in a thread or another process (inference already is).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vlserve.errors import RequestError, VlserveError
from vlserve.jobs.model import Job, check_lease, clamp_progress
from vlserve.jobs.store import JobStore

__all__ = ["INTERNAL_ERROR", "Handler", "Worker", "report_progress"]

log = logging.getLogger("vlserve.jobs")

Handler = Callable[[Job], Awaitable[dict[str, Any]]]
#: The error recorded for any exception that is not a ``VlserveError`` (details go to the log only).
INTERNAL_ERROR: dict[str, Any] = {"code": 5000, "msg": "internal error while running the job"}
_COMPLETE_TRIES = 3


@dataclass
class _Progress:
    value: float | None = None


_progress: contextvars.ContextVar[_Progress | None] = contextvars.ContextVar(
    "vlserve_job_progress", default=None
)


def report_progress(fraction: float) -> None:
    """Record the running job's progress (0..1); sent with its next heartbeat.

    Call it from inside a handler; outside one it does nothing.
    """
    holder = _progress.get()
    if holder is not None:
        holder.value = clamp_progress(fraction)


@dataclass
class _Run:
    """One claimed job in flight; ``stopped`` says why the heartbeat ended it, if it did."""

    job: Job
    progress: _Progress
    leased_at: float  # loop time just before the claim or the last heartbeat that got through
    stopped: Literal["cancel", "lost"] | None = None


class Worker:
    """Runs jobs of ``lanes`` from ``store`` with ``handler``, at most ``concurrency`` at a time.

    ``lease_seconds``: how long a claimed job stays ours without a heartbeat; a worker that dies
    delays its jobs by about this much. ``heartbeat_interval`` (default: a third of the lease, at
    most 2 s) also bounds how long a cancel takes to reach the handler. ``requeue_interval``
    (default: half the lease, at most 5 s) is how often expired leases are taken back.
    """

    def __init__(
        self,
        store: JobStore,
        handler: Handler,
        *,
        lanes: Sequence[str],
        concurrency: int = 1,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.2,
        worker_id: str | None = None,
        heartbeat_interval: float | None = None,
        requeue_interval: float | None = None,
    ) -> None:
        check_lease(lease_seconds)
        if not lanes:
            raise ValueError("a worker serves at least one lane")
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval is positive")
        self.store = store
        self.handler = handler
        self.lanes = list(lanes)
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.heartbeat_interval = heartbeat_interval or min(self.lease_seconds / 3, 2.0)
        self.requeue_interval = requeue_interval or min(self.lease_seconds / 2, 5.0)
        self._active: dict[asyncio.Task[None], _Run] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False
        self._runner: asyncio.Task[Any] | None = None

    @property
    def active_jobs(self) -> list[str]:
        """Ids of the jobs this worker is running now."""
        return [run.job.id for run in self._active.values()]

    async def run(self) -> None:
        """Claim and run jobs until ``stop()``; then wait for the running ones and return."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        self._runner = asyncio.current_task()
        loop = asyncio.get_running_loop()
        next_requeue = 0.0
        failures = 0
        try:
            while not self._stop.is_set():
                # Cleared before looking for work, so a job ending meanwhile wakes the wait below.
                self._wake.clear()
                try:
                    if loop.time() >= next_requeue:
                        next_requeue = loop.time() + self.requeue_interval
                        if taken := await self.store.requeue_expired():
                            log.info("took back %d job(s) whose lease expired", taken)
                    await self._fill()
                    failures = 0
                except Exception:
                    # The store may be briefly unreachable (Redis restarting, SQLite locked):
                    # back off and retry rather than let one blip end the worker.
                    failures += 1
                    log.exception("job store error in worker %s (failure %d)", self.worker_id, failures)
                await self._sleep(min(self.poll_interval * 2**failures, 10.0))
            await asyncio.gather(*self._active, return_exceptions=True)
        except asyncio.CancelledError:
            await self._cancel_active()
            raise
        finally:
            self._done.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming and wait for running jobs; after ``timeout`` seconds cancel them.

        A cancelled job is not completed: its lease expires and another worker runs it again.
        A loop stuck in a store call that never returns (an unreachable Redis) is cancelled too.
        """
        self._stop.set()
        self._wake.set()
        if not self._started:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._done.wait()), timeout)
        except TimeoutError:
            await self._cancel_active()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done.wait()), 1.0)
            if not self._done.is_set() and self._runner is not None:
                self._runner.cancel()
            await self._done.wait()

    async def _cancel_active(self) -> None:
        tasks = list(self._active)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _fill(self) -> None:
        """Claim jobs until every slot is busy or no job is queued."""
        loop = asyncio.get_running_loop()
        while len(self._active) < self.concurrency and not self._stop.is_set():
            asked = loop.time()  # the store's lease runs from a moment after this
            job = await self.store.claim(self.worker_id, self.lanes, self.lease_seconds)
            if job is None:
                return
            run = _Run(job, _Progress(), leased_at=asked)
            task = asyncio.create_task(self._execute(run), name=f"vlserve-job-{job.id}")
            self._active[task] = run
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)
        self._wake.set()
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("worker %s: job task failed", self.worker_id, exc_info=err)

    async def _execute(self, run: _Run) -> None:
        job = run.job
        # The handler task copies this context, so report_progress() inside it finds the holder.
        _progress.set(run.progress)
        handler = asyncio.create_task(self._call_handler(job))
        beat = asyncio.create_task(self._keep_lease(run, handler))
        try:
            outcome: dict[str, Any]
            try:
                result = await handler
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if run.stopped is None and current is not None and current.cancelling():
                    raise  # the worker itself is being cancelled: leave the lease to expire
                if run.stopped == "lost":
                    log.warning("job %s: lease lost; another worker will run it", job.id)
                    return
                outcome = {"cancelled": True} if run.stopped == "cancel" else {"error": INTERNAL_ERROR}
            except VlserveError as err:
                outcome = {"error": {"code": err.code, "msg": err.message}}
            except Exception:
                log.exception("job %s failed in its handler", job.id)
                outcome = {"error": INTERNAL_ERROR}
            else:
                if isinstance(result, dict):
                    outcome = {"result": result}
                else:
                    log.error("job %s: the handler returned %s, not a dict", job.id, type(result).__name__)
                    outcome = {"error": INTERNAL_ERROR}
            # The heartbeat keeps running until the outcome is recorded, so that retries below
            # still hold the lease.
            await self._complete(job, outcome)
        finally:
            beat.cancel()
            handler.cancel()
            await asyncio.gather(beat, handler, return_exceptions=True)

    async def _call_handler(self, job: Job) -> dict[str, Any]:
        return await self.handler(job)

    async def _keep_lease(self, run: _Run, handler: asyncio.Task[dict[str, Any]]) -> None:
        job = run.job
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            sent = loop.time()
            try:
                # Bounded: a store that stopped answering must not hold the beat past the lease.
                ours = await asyncio.wait_for(self.store.heartbeat(
                    job.id, self.worker_id, self.lease_seconds, run.progress.value, attempt=job.attempts
                ), timeout=max(self.lease_seconds - (sent - run.leased_at), self.heartbeat_interval))
            except Exception:
                if loop.time() - run.leased_at < self.lease_seconds:
                    # Keep running: the lease may still be valid, and the next beat may get through.
                    log.warning("job %s: heartbeat failed", job.id, exc_info=True)
                    continue
                log.warning("job %s: no heartbeat got through for a whole lease (%g s); stopping it, another "
                            "worker will run it", job.id, self.lease_seconds)
                run.stopped = "lost"
                handler.cancel()
                return
            if ours:
                run.leased_at = sent
                continue
            try:
                cancel = await self.store.is_cancel_requested(job.id)
            except Exception:
                cancel = False
            run.stopped = "cancel" if cancel else "lost"
            handler.cancel()
            return

    async def _complete(self, job: Job, outcome: dict[str, Any]) -> None:
        """Record the outcome; a result the store refuses (not JSON) becomes an internal error."""
        for attempt in range(1, _COMPLETE_TRIES + 1):
            try:
                done = await self.store.complete(job.id, self.worker_id, attempt=job.attempts, **outcome)
            except (RequestError, TypeError, ValueError):
                if "result" not in outcome:
                    raise
                log.exception("job %s: the handler's result cannot be stored", job.id)
                outcome = {"error": INTERNAL_ERROR}
                continue
            except Exception:
                if attempt == _COMPLETE_TRIES:
                    raise
                log.warning("job %s: recording the outcome failed; retrying", job.id, exc_info=True)
                await asyncio.sleep(self.poll_interval * attempt)
                continue
            if not done:
                log.warning("job %s: lease lost before completion; this run's outcome is discarded", job.id)
            return
