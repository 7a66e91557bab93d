"""A job store in Redis, so that several server replicas share one queue.

Every state change is one Lua script (see ``_redis_lua`` for the key layout and the scripts),
hence atomic: two replicas never claim the same job, and a completion by a worker that lost its
lease is refused. Reads (get, list, counts) are plain commands.

Durability is Redis's: run it with ``appendonly yes``; ``appendfsync always`` keeps an accepted
job even if the Redis host loses power, the default ``everysec`` may lose the last second.
redis-py (``pip install redis``) is imported only when a ``RedisJobStore`` is made.
"""

from __future__ import annotations

import builtins
import json
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from vlserve.errors import NotFoundError, RequestError
from vlserve.jobs import _redis_lua as lua
from vlserve.jobs.model import (
    DEFAULT_MAX_ATTEMPTS,
    STATUSES,
    WORKER_DIED_CODE,
    WORKER_DIED_MESSAGE,
    Job,
    JobStatus,
    JobSummary,
    check_lease,
    check_list_args,
    check_outcome,
    check_status,
    check_submission,
    clamp_progress,
    dump_json,
    new_job_id,
    owner_of,
    task_of,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_PREFIX", "RedisJobStore"]

DEFAULT_PREFIX = "vlserve:jobs:"
_REQUEUE_BATCH = 500
_PURGE_BATCH = 500
#: The fields a listing reads: everything but the request and result bodies.
_SUMMARY_FIELDS = ("id", "owner", "status", "task", "priority", "lane", "created_at", "started_at", "finished_at",
                   "attempts", "error", "progress", "batch_id", "size", "cancel_requested")


class RedisJobStore:
    """A ``JobStore`` in Redis at ``url`` (``redis://host:port/db``), keys under ``prefix``.

    ``client`` may be given instead of ``url`` (it must decode responses); the store then does
    not close it. ``max_attempts``: claims after which a job whose worker keeps dying fails.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        client: Redis | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        if (url is None) == (client is None):
            raise ValueError("give exactly one of url or client")
        self.prefix = prefix
        self.max_attempts = max_attempts
        if client is None:
            try:
                from redis.asyncio import Redis
            except ImportError as err:
                raise ImportError("the Redis job store needs redis-py: pip install 'redis>=5'") from err
            client = Redis.from_url(cast(str, url), decode_responses=True)
            self._owns_client = True
        else:
            self._owns_client = False
        self._redis = client
        self._submit = client.register_script(lua.SUBMIT)
        self._claim = client.register_script(lua.CLAIM)
        self._heartbeat = client.register_script(lua.HEARTBEAT)
        self._complete = client.register_script(lua.COMPLETE)
        self._cancel = client.register_script(lua.CANCEL)
        self._requeue = client.register_script(lua.REQUEUE)
        self._purge = client.register_script(lua.PURGE)

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was given); the data stays."""
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisJobStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    # -- the API side --------------------------------------------------------------------------

    async def submit(
        self,
        owner: str | None,
        requests: builtins.list[dict[str, Any]],
        *,
        lane: str,
        priority: int = 0,
        batch_id: str | None = None,
    ) -> builtins.list[Job]:
        """Queue one job per request in one script (all or none)."""
        owner = owner_of(owner)
        bodies = check_submission(requests, lane, priority, batch_id)
        ids = [new_job_id() for _ in requests]
        args: builtins.list[str | int] = [self.prefix, owner, lane, priority, batch_id or "", len(ids)]
        for job_id, body, request in zip(ids, bodies, requests, strict=True):
            args += [job_id, body, task_of(request) or ""]
        created = float(await self._submit(keys=[], args=args))
        return [
            Job(
                id=job_id,
                owner=owner,
                request=dict(request),
                status="queued",
                priority=priority,
                lane=lane,
                created_at=created,
                started_at=None,
                finished_at=None,
                attempts=0,
                result=None,
                error=None,
                progress=0.0,
                batch_id=batch_id,
            )
            for job_id, request in zip(ids, requests, strict=True)
        ]

    async def get(self, job_id: str, owner: str | None) -> Job:
        """The owner's job, or ``NotFoundError``."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._job_key(job_id)))
        # Same answer for "no such job" and "not yours": existence is not revealed.
        if not fields or fields.get("owner") != owner_of(owner):
            raise NotFoundError(f"job {job_id!r} not found")
        return _to_job(fields)

    async def summary(self, job_id: str, owner: str | None) -> JobSummary:
        """The owner's job without its bodies (one HMGET), or ``NotFoundError``."""
        values = cast(builtins.list[str | None], await self._redis.hmget(self._job_key(job_id), _SUMMARY_FIELDS))
        fields = dict(zip(_SUMMARY_FIELDS, values, strict=True))
        if fields["id"] is None or fields.get("owner") != owner_of(owner):
            raise NotFoundError(f"job {job_id!r} not found")
        return _to_summary(fields)

    async def list(
        self,
        owner: str | None,
        *,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobSummary]:
        """The owner's jobs, newest first, without their bodies."""
        check_status(status)
        check_list_args(limit, offset)
        index = f"{self.prefix}owner:{status or 'all'}:{owner_of(owner)}"
        ids = cast(builtins.list[str], await self._redis.zrevrange(index, offset, offset + limit - 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self._job_key(job_id), _SUMMARY_FIELDS)
            rows = await pipe.execute()
        found = [dict(zip(_SUMMARY_FIELDS, values, strict=True)) for values in rows]
        jobs = [_to_summary(fields) for fields in found if fields["id"] is not None]
        # A job may change status between the index read and the hash read.
        return [job for job in jobs if status is None or job.status == status]

    async def cancel(self, job_id: str, owner: str | None) -> Job:
        """Cancel a queued job, or request cancellation of a running one."""
        reply = await self._cancel(keys=[], args=[self.prefix, job_id, owner_of(owner)])
        if reply[0] == "missing":
            raise NotFoundError(f"job {job_id!r} not found")
        if reply[0] == "finished":
            raise RequestError(f"job {job_id!r} already finished ({reply[1]}); it cannot be cancelled")
        return _to_job(_pairs(reply[1]))

    # -- the worker side -----------------------------------------------------------------------

    async def claim(self, worker_id: str, lanes: builtins.list[str], lease_seconds: float) -> Job | None:
        """Take the best queued job of these lanes under a lease."""
        check_lease(lease_seconds)
        if not lanes:
            return None
        reply = await self._claim(keys=[], args=[self.prefix, worker_id, repr(float(lease_seconds)), *lanes])
        return None if reply is None else _to_job(_pairs(reply))

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        lease_seconds: float,
        progress: float | None = None,
        *,
        attempt: int | None = None,
    ) -> bool:
        """Extend the lease; False if the job is no longer this worker's to run."""
        check_lease(lease_seconds)
        fraction = clamp_progress(progress)
        args = [
            self.prefix,
            job_id,
            worker_id,
            repr(float(lease_seconds)),
            "" if fraction is None else repr(fraction),
            "" if attempt is None else str(attempt),
        ]
        return bool(await self._heartbeat(keys=[], args=args))

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
        """Write the outcome if this worker holds the lease; False (and nothing written) if not."""
        check_outcome(result, error, cancelled)
        if result is not None:
            status, field, payload = "succeeded", "result", dump_json(result, "the job result")
        elif error is not None:
            status, field, payload = "failed", "error", dump_json(error, "the job error")
        else:
            status, field, payload = "cancelled", "", ""
        fence = "" if attempt is None else str(attempt)
        args = [self.prefix, job_id, worker_id, fence, status, field, payload]
        return bool(await self._complete(keys=[], args=args))

    async def requeue_expired(self) -> int:
        """Take back expired leases (queued again, failed, or cancelled)."""
        died = dump_json({"code": WORKER_DIED_CODE, "msg": WORKER_DIED_MESSAGE}, "error")
        total = 0
        # In batches, so that one script never blocks Redis for long after a mass outage.
        while True:
            taken, seen = await self._requeue(
                keys=[], args=[self.prefix, self.max_attempts, died, _REQUEUE_BATCH]
            )
            total += int(taken)
            if int(seen) < _REQUEUE_BATCH:
                return total

    async def is_cancel_requested(self, job_id: str) -> bool:
        """True when a cancel was requested for this job."""
        return await self._redis.hget(self._job_key(job_id), "cancel_requested") == "1"

    async def stored_bytes(self, owner: str | None) -> int:
        """Bytes the owner's stored jobs take (request, result and error JSON)."""
        return int(await self._redis.hget(f"{self.prefix}bytes", owner_of(owner)) or 0)

    async def purge(self, *, max_age: float = 0.0, keep_finished: int = 0) -> int:
        """Delete finished jobs older than ``max_age`` seconds, then the oldest beyond
        ``keep_finished`` (0 disables either); return how many were deleted."""
        total = 0
        while True:  # in batches, so that one script never blocks Redis for long
            deleted = int(await self._purge(keys=[], args=[self.prefix, repr(float(max_age)), int(keep_finished),
                                                           _PURGE_BATCH]))
            total += deleted
            if deleted < _PURGE_BATCH:
                return total

    async def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per lane per status."""
        lanes = sorted(cast(set[str], await self._redis.smembers(f"{self.prefix}lanes")))
        async with self._redis.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.hgetall(f"{self.prefix}counts:{lane}")
            rows = await pipe.execute()
        counts: dict[str, dict[str, int]] = {}
        for lane, row in zip(lanes, rows, strict=True):
            counts[lane] = {status: int(row.get(status, 0)) for status in STATUSES}
        return counts


def _pairs(flat: builtins.list[str]) -> dict[str, str]:
    """An HGETALL reply returned through Lua (a flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _to_summary(fields: dict[str, str | None]) -> JobSummary:
    def text(name: str) -> str:
        value = fields[name]
        assert value is not None, name
        return value

    error = fields.get("error")
    return JobSummary(
        id=text("id"),
        owner=text("owner"),
        status=cast(JobStatus, text("status")),
        task=fields.get("task") or None,
        priority=int(text("priority")),
        lane=text("lane"),
        created_at=float(text("created_at")),
        started_at=_optional_float(fields.get("started_at")),
        finished_at=_optional_float(fields.get("finished_at")),
        attempts=int(text("attempts")),
        error=None if error is None else json.loads(error),
        progress=float(text("progress")),
        batch_id=fields.get("batch_id"),
        size=int(fields.get("size") or 0),
        cancel_requested=fields.get("cancel_requested") == "1",
    )


def _to_job(fields: dict[str, str]) -> Job:
    return Job(
        id=fields["id"],
        owner=fields["owner"],
        request=json.loads(fields["request"]),
        status=cast(JobStatus, fields["status"]),
        priority=int(fields["priority"]),
        lane=fields["lane"],
        created_at=float(fields["created_at"]),
        started_at=_optional_float(fields.get("started_at")),
        finished_at=_optional_float(fields.get("finished_at")),
        attempts=int(fields["attempts"]),
        result=json.loads(fields["result"]) if "result" in fields else None,
        error=json.loads(fields["error"]) if "error" in fields else None,
        progress=float(fields["progress"]),
        batch_id=fields.get("batch_id"),
        cancel_requested=fields.get("cancel_requested") == "1",
    )
