"""Leases: expiry, requeue, fencing of late completions, and the attempts limit (both backends)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.jobs.helpers import Backend, run
from vlserve.jobs import JobStore

SHORT = 0.2  # seconds: the lease of a worker that is about to "die"
PAST = 0.3  # seconds to sleep so that a SHORT lease has surely expired


def test_expired_lease_goes_to_another_worker_and_the_late_result_is_refused(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        first = await store.claim("w1", ["default"], SHORT)
        assert first is not None and first.attempts == 1
        await asyncio.sleep(PAST)  # w1 stops heartbeating
        assert await store.requeue_expired() == 1
        requeued = await store.get(job.id, "alice")
        assert (requeued.status, requeued.attempts) == ("queued", 1)
        second = await store.claim("w2", ["default"], 30)
        assert second is not None and (second.id, second.attempts) == (job.id, 2)
        # w1 wakes up: its lease is gone, so nothing it sends is accepted.
        assert not await store.heartbeat(job.id, "w1", 30)
        assert not await store.complete(job.id, "w1", result={"by": "w1"})
        assert await store.complete(job.id, "w2", result={"by": "w2"}, attempt=2)
        assert not await store.complete(job.id, "w1", result={"by": "w1"})
        done = await store.get(job.id, "alice")
        assert (done.status, done.result, done.attempts) == ("succeeded", {"by": "w2"}, 2)

    run(backend, body)


def test_attempt_fences_a_worker_that_reclaimed_its_own_job(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], SHORT)
        await asyncio.sleep(PAST)
        await store.requeue_expired()
        again = await store.claim("w1", ["default"], 30)  # the same worker id, a new attempt
        assert again is not None and again.attempts == 2
        assert not await store.heartbeat(job.id, "w1", 30, attempt=1)
        assert not await store.complete(job.id, "w1", result={"attempt": 1}, attempt=1)
        assert await store.complete(job.id, "w1", result={"attempt": 2}, attempt=2)
        assert (await store.get(job.id, "alice")).result == {"attempt": 2}

    run(backend, body)


def test_an_expired_lease_not_yet_taken_back_still_completes(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], SHORT)
        await asyncio.sleep(PAST)
        # Nobody else can hold the job until requeue_expired runs, so the result is kept.
        assert await store.complete(job.id, "w1", result={"late": True})
        assert await store.requeue_expired() == 0
        assert (await store.get(job.id, "alice")).status == "succeeded"

    run(backend, body)


def test_a_job_whose_worker_keeps_dying_fails(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        for attempt in (1, 2):
            claimed = await store.claim(f"w{attempt}", ["default"], SHORT)
            assert claimed is not None and claimed.attempts == attempt
            await asyncio.sleep(PAST)
            assert await store.requeue_expired() == 1
        failed = await store.get(job.id, "alice")
        assert (failed.status, failed.attempts) == ("failed", 2)
        assert failed.error == {"code": 5000, "msg": "worker died repeatedly"}
        assert failed.finished_at is not None
        assert await store.claim("w3", ["default"], 30) is None
        counts = await store.counts()
        assert (counts["default"]["failed"], counts["default"]["running"]) == (1, 0)

    run(backend, body, max_attempts=2)


def test_cancel_requested_then_worker_died_ends_cancelled(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], SHORT)
        await store.cancel(job.id, "alice")
        await asyncio.sleep(PAST)
        assert await store.requeue_expired() == 1
        done = await store.get(job.id, "alice")
        assert (done.status, done.error) == ("cancelled", None)
        assert await store.claim("w2", ["default"], 30) is None

    run(backend, body)


def test_requeue_keeps_priority_and_order(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [old] = await store.submit("alice", [{}], lane="default", priority=2)
        [new] = await store.submit("alice", [{}], lane="default", priority=2)
        [low] = await store.submit("alice", [{}], lane="default", priority=1)
        await store.claim("w1", ["default"], SHORT)  # takes `old`
        await asyncio.sleep(PAST)
        await store.requeue_expired()
        order: list[Any] = [await store.claim("w2", ["default"], 30) for _ in range(3)]
        assert [job.id for job in order] == [old.id, new.id, low.id]

    run(backend, body)
