"""The contract every job store keeps (SQLite, Redis, and any later one).

A *lease* is the right to finish a running job. ``claim`` grants it to one worker with an expiry;
``heartbeat`` extends it; ``requeue_expired`` takes back the leases that expired (the worker died
or stalled) and the job is queued again. Only the current lease holder may ``complete``, so a
job's outcome is written exactly once even though its handler may run more than once. Each claim
increments ``Job.attempts``, which is the lease's fencing token: pass it as ``attempt=`` so that a
worker that lost a lease and later claimed the same job again cannot finish the old attempt.

Owners are API key id strings; ``None`` stands for ``"anonymous"`` (authentication off). A job
of another owner is reported exactly like a missing one (``NotFoundError``), never revealed.
"""

from __future__ import annotations

import builtins
from typing import Any, Protocol, runtime_checkable

from vlserve.jobs.model import Job, JobStatus, JobSummary

__all__ = ["JobStore"]


@runtime_checkable
class JobStore(Protocol):
    """Durable job storage shared by the API (submit, get, list, cancel) and the workers."""

    async def submit(
        self,
        owner: str | None,
        requests: builtins.list[dict[str, Any]],
        *,
        lane: str,
        priority: int = 0,
        batch_id: str | None = None,
    ) -> builtins.list[Job]:
        """Queue one job per request, all or none; return them in request order.

        Raises ``RequestError`` for an empty batch, a request that is not a JSON object, a bad lane
        or a priority outside ``MIN_PRIORITY..MAX_PRIORITY``.
        """
        ...

    async def get(self, job_id: str, owner: str | None) -> Job:
        """The job, or ``NotFoundError`` when it does not exist or belongs to another owner."""
        ...

    async def summary(self, job_id: str, owner: str | None) -> JobSummary:
        """The job without its request and result bodies (cheap to read often, e.g. to follow its
        progress), or ``NotFoundError`` like ``get``."""
        ...

    async def list(
        self,
        owner: str | None,
        *,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobSummary]:
        """The owner's jobs, newest first, optionally of one status, without their request and
        result bodies (read one job with ``get`` for those)."""
        ...

    async def cancel(self, job_id: str, owner: str | None) -> Job:
        """Cancel a job and return it as it now is.

        queued → cancelled at once; running → ``cancel_requested`` is set and the worker finishes
        it as cancelled when it notices; already finished → ``RequestError``; another owner's or
        a missing job → ``NotFoundError``.
        """
        ...

    async def claim(self, worker_id: str, lanes: builtins.list[str], lease_seconds: float) -> Job | None:
        """Atomically take the highest-priority, oldest queued job of these lanes, or None.

        The job becomes running, held by ``worker_id`` until ``lease_seconds`` from now, and its
        ``attempts`` grows by one. No two claimers, in any process, ever get the same attempt.
        """
        ...

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        lease_seconds: float,
        progress: float | None = None,
        *,
        attempt: int | None = None,
    ) -> bool:
        """Extend the lease to ``lease_seconds`` from now and record progress (0..1).

        False when the job is no longer this worker's to run: the lease was taken back, the job
        finished, or a cancel was requested (then the lease is not extended).
        """
        ...

    async def complete(
        self,
        job_id: str,
        worker_id: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        cancelled: bool = False,
        attempt: int | None = None,
    ) -> bool:
        """Finish a running job with exactly one of a result, an error or cancelled.

        Written only if ``worker_id`` (and ``attempt``, when given) holds the lease; otherwise
        nothing changes and False is returned, so a late or repeated completion is discarded.
        A lease that expired but was not yet taken back by ``requeue_expired`` still counts.
        """
        ...

    async def requeue_expired(self) -> int:
        """Take back every expired lease; return how many jobs were taken back.

        Each such job is queued again, or fails with code 5000 "worker died repeatedly" once it
        has been claimed ``max_attempts`` times, or is cancelled if a cancel was requested.
        """
        ...

    async def is_cancel_requested(self, job_id: str) -> bool:
        """True when a cancel was requested for this job (False for an unknown id)."""
        ...

    async def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per lane per status (every status present, zeros included), for metrics."""
        ...

    async def stored_bytes(self, owner: str | None) -> int:
        """Bytes the owner's stored jobs take: their request, result and error JSON."""
        ...

    async def purge(self, *, max_age: float = 0.0, keep_finished: int = 0) -> int:
        """Delete finished jobs (succeeded, failed, cancelled) that finished more than ``max_age``
        seconds ago, then the oldest finished ones beyond the newest ``keep_finished``; 0 turns
        either rule off. Queued and running jobs are never deleted. Returns how many went."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the data stays."""
        ...
