"""The default job store: one SQLite file, embedded, nothing to set up.

One connection per store, used only from the store's own single thread, so the event loop never
waits on disk. Several processes (server replicas on one host) may open the same file: every
write is a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock before reading, so
the read-then-update of ``claim`` can never interleave with another claimer's.

Durability: WAL mode. With ``synchronous=NORMAL`` a committed transaction already survives the
process being killed (the WAL is in the OS's hands at commit), but not an OS crash or power cut.
``FULL`` (the default) also fsyncs the WAL at every commit, so a job whose id was returned is
never lost even then; the price is one fsync per write, small next to an inference.
The file must be on a local disk: WAL needs shared memory, which network file systems lack.

Request and result bodies (which may carry inline media) live in their own table, ``job_bodies``:
listing, counting, quotas and purging read only the small ``jobs`` rows.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from vlserve.errors import NotFoundError, RequestError
from vlserve.jobs.model import (
    DEFAULT_MAX_ATTEMPTS,
    STATUSES,
    TERMINAL_STATUSES,
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

__all__ = ["SQLiteJobStore"]

_T = TypeVar("_T")
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY,   -- insertion order: FIFO among equal timestamps
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    batch_id         TEXT,
    lane             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    task             TEXT,
    size             INTEGER NOT NULL DEFAULT 0,  -- bytes of request + result + error JSON
    error            TEXT,                  -- JSON
    progress         REAL NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    worker_id        TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
-- claim: the best queued job of a lane is the first entry of this index.
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, lane, priority DESC, created_at);
-- list: an owner's jobs, newest first.
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at);
-- requeue_expired: running jobs by lease expiry.
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (status, lease_expires_at);
-- purge: finished jobs by age.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- The bodies, one row per job (same seq), read only when one job is read.
CREATE TABLE IF NOT EXISTS job_bodies (
    seq              INTEGER PRIMARY KEY,
    request          TEXT NOT NULL,         -- JSON
    result           TEXT                   -- JSON
);
"""
# Version 1 kept the bodies in the jobs table: move them out (run inside the opening transaction).
_MIGRATE_FROM_1 = """
DROP INDEX IF EXISTS jobs_queue;
DROP INDEX IF EXISTS jobs_owner;
DROP INDEX IF EXISTS jobs_lease;
ALTER TABLE jobs RENAME TO jobs_v1;
{schema};
INSERT INTO jobs (seq, id, owner, batch_id, lane, priority, status, task, size, error, progress, attempts,
                  created_at, started_at, finished_at, worker_id, lease_expires_at, cancel_requested)
    SELECT seq, id, owner, batch_id, lane, priority, status, json_extract(request, '$.task'),
           length(CAST(request AS BLOB)) + COALESCE(length(CAST(result AS BLOB)), 0)
           + COALESCE(length(CAST(error AS BLOB)), 0),
           error, progress, attempts, created_at, started_at, finished_at, worker_id, lease_expires_at,
           cancel_requested
    FROM jobs_v1;
INSERT INTO job_bodies (seq, request, result) SELECT seq, request, result FROM jobs_v1;
DROP TABLE jobs_v1
"""
_SUMMARY_COLUMNS = (
    "jobs.id, jobs.owner, jobs.status, jobs.task, jobs.priority, jobs.lane, jobs.created_at, jobs.started_at, "
    "jobs.finished_at, jobs.attempts, jobs.error, jobs.progress, jobs.batch_id, jobs.size, jobs.cancel_requested"
)
_COLUMNS = _SUMMARY_COLUMNS + ", job_bodies.request, job_bodies.result"
_FROM = "jobs JOIN job_bodies ON job_bodies.seq = jobs.seq"
_TERMINAL = "(" + ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES)) + ")"


class SQLiteJobStore:
    """A ``JobStore`` in one SQLite file (created on first use).

    ``max_attempts``: claims after which a job whose worker keeps dying fails (code 5000).
    ``synchronous``: ``"FULL"`` survives power loss, ``"NORMAL"`` survives process kills only.
    ``busy_timeout``: seconds to wait for another process's write lock before failing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 30.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError('synchronous is "FULL" or "NORMAL"')
        self.path = Path(path)
        self.max_attempts = max_attempts
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        # One thread owns the connection: sqlite3 objects must not cross threads, and one
        # thread also serialises this store's own transactions without a lock.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlserve-jobs-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise RuntimeError("the job store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_conn, fn, args)

    def _with_conn(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn, *args)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            with _immediate(conn):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > _SCHEMA_VERSION:
                    raise RuntimeError(f"{self.path} has job schema {version}; we know {_SCHEMA_VERSION}")
                script = _MIGRATE_FROM_1.format(schema=_SCHEMA.strip().rstrip(";")) if version == 1 else _SCHEMA
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL ignores the busy timeout: when replicas open a fresh file together,
        # all but one get SQLITE_BUSY at once. Retry until the timeout has passed.
        deadline = time.monotonic() + self._busy_ms / 1000
        delay = 0.002
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
                break
            except sqlite3.OperationalError as err:
                if err.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode}); use a local disk")

    async def aclose(self) -> None:
        """Close the connection and stop the store's thread; the file stays."""
        if self._closed:
            return
        self._closed = True
        try:
            # On the store's thread, which owns the connection; never connects just to close.
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def __aenter__(self) -> SQLiteJobStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
        """Queue one job per request in one transaction (all or none)."""
        owner = owner_of(owner)
        bodies = check_submission(requests, lane, priority, batch_id)
        now = time.time()
        jobs = [
            Job(
                id=new_job_id(),
                owner=owner,
                request=dict(request),
                status="queued",
                priority=priority,
                lane=lane,
                created_at=now,
                started_at=None,
                finished_at=None,
                attempts=0,
                result=None,
                error=None,
                progress=0.0,
                batch_id=batch_id,
            )
            for request in requests
        ]
        rows = [
            (job.id, owner, batch_id, lane, priority, task_of(job.request), len(body.encode()), now, body)
            for job, body in zip(jobs, bodies, strict=True)
        ]
        await self._run(_insert, rows)
        return jobs

    async def get(self, job_id: str, owner: str | None) -> Job:
        """The owner's job, or ``NotFoundError``."""
        return await self._run(_get_owned, job_id, owner_of(owner))

    async def summary(self, job_id: str, owner: str | None) -> JobSummary:
        """The owner's job without its bodies, or ``NotFoundError``."""
        return await self._run(_summary_owned, job_id, owner_of(owner))

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
        return await self._run(_list, owner_of(owner), status, limit, offset)

    async def cancel(self, job_id: str, owner: str | None) -> Job:
        """Cancel a queued job, or request cancellation of a running one."""
        return await self._run(_cancel, job_id, owner_of(owner), time.time())

    # -- the worker side -----------------------------------------------------------------------

    async def claim(self, worker_id: str, lanes: builtins.list[str], lease_seconds: float) -> Job | None:
        """Take the best queued job of these lanes under a lease."""
        check_lease(lease_seconds)
        if not lanes:
            return None
        return await self._run(_claim, worker_id, tuple(dict.fromkeys(lanes)), lease_seconds, time.time())

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
        now = time.time()
        return await self._run(
            _heartbeat, job_id, worker_id, attempt, now + lease_seconds, clamp_progress(progress)
        )

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
        status: JobStatus = "cancelled"
        if result is not None:
            status = "succeeded"
        elif error is not None:
            status = "failed"
        result_json = None if result is None else dump_json(result, "the job result")
        error_json = None if error is None else dump_json(error, "the job error")
        return await self._run(
            _complete, job_id, worker_id, attempt, status, result_json, error_json, time.time()
        )

    async def requeue_expired(self) -> int:
        """Take back expired leases (queued again, failed, or cancelled)."""
        return await self._run(_requeue_expired, self.max_attempts, time.time())

    async def is_cancel_requested(self, job_id: str) -> bool:
        """True when a cancel was requested for this job."""
        return await self._run(_is_cancel_requested, job_id)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per lane per status."""
        return await self._run(_counts)

    async def stored_bytes(self, owner: str | None) -> int:
        """Bytes the owner's stored jobs take (request, result and error JSON)."""
        return await self._run(_stored_bytes, owner_of(owner))

    async def purge(self, *, max_age: float = 0.0, keep_finished: int = 0) -> int:
        """Delete finished jobs older than ``max_age`` seconds, then the oldest beyond
        ``keep_finished`` (0 disables either); return how many were deleted."""
        return await self._run(_purge, max_age, keep_finished, time.time())


# -- SQL, run on the store's thread --------------------------------------------------------------


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds the database's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _common(row: sqlite3.Row) -> dict[str, Any]:
    """The columns a job and its summary share."""
    return {
        "id": row["id"], "owner": row["owner"], "status": row["status"], "priority": row["priority"],
        "lane": row["lane"], "created_at": row["created_at"], "started_at": row["started_at"],
        "finished_at": row["finished_at"], "attempts": row["attempts"], "progress": row["progress"],
        "batch_id": row["batch_id"], "cancel_requested": bool(row["cancel_requested"]),
        "error": None if row["error"] is None else json.loads(row["error"]),
    }


def _to_summary(row: sqlite3.Row) -> JobSummary:
    return JobSummary(**_common(row), task=row["task"], size=row["size"])


def _to_job(row: sqlite3.Row) -> Job:
    return Job(**_common(row), request=json.loads(row["request"]),
               result=None if row["result"] is None else json.loads(row["result"]))


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    with _immediate(conn):
        for *job, body in rows:
            cursor = conn.execute(
                "INSERT INTO jobs (id, owner, batch_id, lane, priority, status, task, size, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                job,
            )
            conn.execute("INSERT INTO job_bodies (seq, request) VALUES (?, ?)", (cursor.lastrowid, body))


def _fetch(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE jobs.id = ?", (job_id,)).fetchone()
    return None if row is None else _to_job(row)


def _get_owned(conn: sqlite3.Connection, job_id: str, owner: str) -> Job:
    job = _fetch(conn, job_id)
    # Same answer for "no such job" and "not yours": existence is not revealed.
    if job is None or job.owner != owner:
        raise NotFoundError(f"job {job_id!r} not found")
    return job


def _summary_owned(conn: sqlite3.Connection, job_id: str, owner: str) -> JobSummary:
    row = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    summary = None if row is None else _to_summary(row)
    if summary is None or summary.owner != owner:
        raise NotFoundError(f"job {job_id!r} not found")
    return summary


def _list(conn: sqlite3.Connection, owner: str, status: str | None, limit: int, offset: int) -> list[JobSummary]:
    where, args = "owner = ?", [owner]
    if status is not None:
        where += " AND status = ?"
        args.append(status)
    # The jobs table only: the bodies are never read for a listing.
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE {where} ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return [_to_summary(row) for row in rows]


def _cancel(conn: sqlite3.Connection, job_id: str, owner: str, now: float) -> Job:
    with _immediate(conn):
        job = _get_owned(conn, job_id, owner)
        if job.status == "queued":
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, cancel_requested = 1 WHERE id = ?",
                (now, job_id),
            )
        elif job.status == "running":
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        else:
            raise RequestError(f"job {job_id!r} already finished ({job.status}); it cannot be cancelled")
        updated = _fetch(conn, job_id)
    assert updated is not None
    return updated


def _claim(
    conn: sqlite3.Connection, worker_id: str, lanes: tuple[str, ...], lease: float, now: float
) -> Job | None:
    with _immediate(conn):
        # One indexed probe per lane (the head of its queue), then the best head wins: cheaper
        # than a sort over ``lane IN (...)`` when the queues are long.
        best: sqlite3.Row | None = None
        for lane in lanes:
            row = conn.execute(
                "SELECT seq, priority, created_at FROM jobs WHERE status = 'queued' AND lane = ? "
                "ORDER BY priority DESC, created_at, seq LIMIT 1",
                (lane,),
            ).fetchone()
            if row is not None and (best is None or _queue_order(row) < _queue_order(best)):
                best = row
        if best is None:
            return None
        conn.execute(
            "UPDATE jobs SET status = 'running', worker_id = ?, lease_expires_at = ?, started_at = ?, "
            "attempts = attempts + 1, progress = 0 WHERE seq = ?",
            (worker_id, now + lease, now, best["seq"]),
        )
        row = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE jobs.seq = ?", (best["seq"],)).fetchone()
    return _to_job(row)


def _queue_order(row: sqlite3.Row) -> tuple[int, float, int]:
    return (-row["priority"], row["created_at"], row["seq"])


_HOLDER = "id = ? AND status = 'running' AND worker_id = ? AND (? IS NULL OR attempts = ?)"


def _heartbeat(
    conn: sqlite3.Connection,
    job_id: str,
    worker_id: str,
    attempt: int | None,
    expires: float,
    progress: float | None,
) -> bool:
    with _immediate(conn):
        cursor = conn.execute(
            f"UPDATE jobs SET lease_expires_at = ?, progress = COALESCE(?, progress) "
            f"WHERE {_HOLDER} AND cancel_requested = 0",
            (expires, progress, job_id, worker_id, attempt, attempt),
        )
    return cursor.rowcount == 1


def _complete(
    conn: sqlite3.Connection,
    job_id: str,
    worker_id: str,
    attempt: int | None,
    status: str,
    result: str | None,
    error: str | None,
    now: float,
) -> bool:
    # The holder check and the write are one UPDATE: a completion either finds the lease and
    # ends it, or changes nothing. After it, status is no longer 'running', so a second
    # completion of the same attempt also changes nothing.
    added = len((result or "").encode()) + len((error or "").encode())
    with _immediate(conn):
        cursor = conn.execute(
            f"UPDATE jobs SET status = ?, error = ?, finished_at = ?, lease_expires_at = NULL, size = size + ?, "
            f"progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END WHERE {_HOLDER}",
            (status, error, now, added, status, job_id, worker_id, attempt, attempt),
        )
        if cursor.rowcount == 1 and result is not None:
            conn.execute("UPDATE job_bodies SET result = ? WHERE seq = (SELECT seq FROM jobs WHERE id = ?)",
                         (result, job_id))
    return cursor.rowcount == 1


def _requeue_expired(conn: sqlite3.Connection, max_attempts: int, now: float) -> int:
    died = dump_json({"code": WORKER_DIED_CODE, "msg": WORKER_DIED_MESSAGE}, "error")
    expired = "status = 'running' AND lease_expires_at < ?"
    release = "worker_id = NULL, lease_expires_at = NULL"
    # Three updates in one transaction, most specific first: each takes the expired leases the
    # previous ones left, so every expired job gets exactly one of the three fates.
    with _immediate(conn):
        cancelled = conn.execute(
            f"UPDATE jobs SET status = 'cancelled', finished_at = ?, {release} "
            f"WHERE {expired} AND cancel_requested = 1",
            (now, now),
        ).rowcount
        failed = conn.execute(
            f"UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, size = size + ?, {release} "
            f"WHERE {expired} AND attempts >= ?",
            (died, now, len(died.encode()), now, max_attempts),
        ).rowcount
        queued = conn.execute(
            f"UPDATE jobs SET status = 'queued', progress = 0, {release} WHERE {expired}",
            (now,),
        ).rowcount
    return cancelled + failed + queued


def _is_cancel_requested(conn: sqlite3.Connection, job_id: str) -> bool:
    row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row is not None and row[0])


def _counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for lane, status, n in conn.execute("SELECT lane, status, COUNT(*) FROM jobs GROUP BY lane, status"):
        counts.setdefault(lane, dict.fromkeys(STATUSES, 0))[status] = n
    return counts


def _stored_bytes(conn: sqlite3.Connection, owner: str) -> int:
    return int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM jobs WHERE owner = ?", (owner,)).fetchone()[0])


def _purge(conn: sqlite3.Connection, max_age: float, keep_finished: int, now: float) -> int:
    with _immediate(conn):
        doomed: set[int] = set()
        if max_age > 0:
            doomed.update(seq for (seq,) in conn.execute(
                f"SELECT seq FROM jobs WHERE finished_at < ? AND status IN {_TERMINAL}", (now - max_age,)))
        if keep_finished > 0:
            doomed.update(seq for (seq,) in conn.execute(
                f"SELECT seq FROM jobs WHERE finished_at IS NOT NULL AND status IN {_TERMINAL} "
                "ORDER BY finished_at DESC, seq DESC LIMIT -1 OFFSET ?", (keep_finished,)))
        rows = [(seq,) for seq in doomed]
        conn.executemany("DELETE FROM job_bodies WHERE seq = ?", rows)
        conn.executemany("DELETE FROM jobs WHERE seq = ?", rows)
    return len(rows)
