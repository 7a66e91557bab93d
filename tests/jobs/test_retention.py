"""Retention and quotas in both stores (a real SQLite file, a real redis-server): purging by age and
count, stored bytes per owner, listings that never read bodies, and the SQLite schema upgrade."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from tests.jobs.helpers import Backend, run
from vlserve.errors import NotFoundError
from vlserve.jobs import JobStore, SQLiteJobStore
from vlserve.jobs.model import dump_json


async def finish(store: JobStore, owner: str, n: int, **outcome: object) -> list[str]:
    """Submit ``n`` jobs and run each to its end (result by default)."""
    jobs = await store.submit(owner, [{"task": "ocr", "n": i} for i in range(n)], lane="default")
    for _ in jobs:
        claimed = await store.claim("w", ["default"], 30)
        assert claimed is not None
        assert await store.complete(claimed.id, "w", **(outcome or {"result": {"ok": claimed.request["n"]}}))
    return [job.id for job in jobs]


def test_purge_by_age_keeps_fresh_and_unfinished_jobs(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        old = await finish(store, "alice", 2)
        [cancelled] = await store.submit("alice", [{"task": "ocr"}], lane="default")
        await store.cancel(cancelled.id, "alice")
        await asyncio.sleep(1.3)
        fresh = await finish(store, "alice", 1)
        [queued] = await store.submit("alice", [{"task": "ocr"}], lane="default")
        [running] = await store.submit("bob", [{"task": "ocr"}], lane="other")
        assert await store.claim("w", ["other"], 30) is not None

        assert await store.purge(max_age=1.0) == 3
        for job_id in [*old, cancelled.id]:
            with pytest.raises(NotFoundError):
                await store.get(job_id, "alice")
        assert (await store.get(fresh[0], "alice")).status == "succeeded"
        assert (await store.get(queued.id, "alice")).status == "queued"
        assert (await store.get(running.id, "bob")).status == "running"
        assert {j.id for j in await store.list("alice")} == {fresh[0], queued.id}
        counts = await store.counts()
        assert counts["default"]["succeeded"] == 1 and counts["default"]["cancelled"] == 0
        assert await store.purge(max_age=1.0) == 0

    run(backend, body)


def test_purge_by_count_deletes_the_oldest_finished(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        ids = []
        for _ in range(5):
            ids += await finish(store, "alice", 1)
            await asyncio.sleep(0.01)  # distinct finishing times
        [queued] = await store.submit("alice", [{"task": "ocr"}], lane="default")
        assert await store.purge(keep_finished=2) == 3
        assert {j.id for j in await store.list("alice")} == {ids[3], ids[4], queued.id}

    run(backend, body)


def test_stored_bytes_follow_submits_results_and_purges(backend: Backend) -> None:
    request = {"task": "ocr", "images": ["x" * 5000]}
    body_bytes = len(dump_json(request, "r"))

    async def body(store: JobStore) -> None:
        assert await store.stored_bytes("alice") == 0
        [job] = await store.submit("alice", [request], lane="default")
        assert await store.stored_bytes("alice") == body_bytes
        await store.claim("w", ["default"], 30)
        result = {"answer": "y" * 3000}
        await store.complete(job.id, "w", result=result)
        assert await store.stored_bytes("alice") == body_bytes + len(dump_json(result, "r"))
        assert await store.stored_bytes("bob") == 0
        [summary] = await store.list("alice")
        assert summary.size == body_bytes + len(dump_json(result, "r"))
        await asyncio.sleep(0.05)
        assert await store.purge(max_age=0.01) == 1
        assert await store.stored_bytes("alice") == 0

    run(backend, body)


def corrupt_bodies(backend: Backend, ids: list[str]) -> None:
    """Overwrite every stored request body with bytes that are not JSON (behind the store's back)."""
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        with conn:
            conn.execute("UPDATE job_bodies SET request = 'not json {'")
        conn.close()
        return
    import redis

    client = redis.Redis.from_url(backend.target)
    try:
        for job_id in ids:
            client.hset(f"{backend.prefix}job:{job_id}", "request", "not json {")
    finally:
        client.close()


def test_listing_never_reads_request_bodies(backend: Backend) -> None:
    big = {"task": "captioning", "images": ["data:image/png;base64," + "A" * 100_000]}

    async def submit(store: JobStore) -> list[str]:
        return [job.id for job in await store.submit("alice", [big] * 100, lane="default")]

    ids = run(backend, submit)
    corrupt_bodies(backend, ids)  # a listing that parsed any body would now fail

    async def check(store: JobStore) -> None:
        listed = await store.list("alice", limit=100)
        assert {job.id for job in listed} == set(ids)
        assert all(job.task == "captioning" and job.size > 100_000 for job in listed)
        assert not hasattr(listed[0], "request") and not hasattr(listed[0], "result")
        with pytest.raises(json.JSONDecodeError):  # the bodies really are unreadable now
            await store.get(ids[0], "alice")

    run(backend, check)


V1_SCHEMA = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, batch_id TEXT, lane TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL, result TEXT, error TEXT,
    progress REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, worker_id TEXT, lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs (status, lane, priority DESC, created_at);
CREATE INDEX jobs_owner ON jobs (owner, created_at);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    with conn:
        conn.execute("INSERT INTO jobs (id, owner, lane, priority, status, request, result, created_at, finished_at)"
                     " VALUES ('job_old', 'alice', 'default', 0, 'succeeded', '{\"task\":\"ocr\",\"x\":1}',"
                     " '{\"answer\":2}', 1.0, 2.0)")
        conn.execute("INSERT INTO jobs (id, owner, lane, priority, status, request, created_at)"
                     " VALUES ('job_waiting', 'alice', 'default', 0, 'queued', '{\"task\":\"vqa\"}', 3.0)")
    conn.close()

    async def main() -> None:
        async with SQLiteJobStore(path) as store:
            old = await store.get("job_old", "alice")
            assert old.request == {"task": "ocr", "x": 1} and old.result == {"answer": 2}
            listed = {job.id: job for job in await store.list("alice")}
            assert listed["job_old"].task == "ocr" and listed["job_waiting"].task == "vqa"
            assert listed["job_old"].size == len('{"task":"ocr","x":1}') + len('{"answer":2}')
            claimed = await store.claim("w", ["default"], 30)
            assert claimed is not None and claimed.id == "job_waiting" and claimed.request == {"task": "vqa"}
            assert await store.purge(max_age=1.0) == 1  # finished at t=2.0, long ago

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
