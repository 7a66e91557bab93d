"""The JobStore contract, run against both backends (a real SQLite file, a real redis-server)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from tests.jobs.helpers import Backend, run
from vlserve.errors import NotFoundError, RequestError
from vlserve.jobs import STATUSES, JobStore


def test_store_is_a_jobstore(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        assert isinstance(store, JobStore)

    run(backend, body)


def test_submit_then_get(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        jobs = await store.submit(
            "alice", [{"task": "ocr", "n": 1}, {"task": "vqa", "n": 2}], lane="gpu", priority=3, batch_id="b1"
        )
        assert len({job.id for job in jobs}) == 2
        for job, n in zip(jobs, (1, 2), strict=True):
            got = await store.get(job.id, "alice")
            assert got == job
            assert got.request["n"] == n
            assert (got.status, got.lane, got.priority, got.batch_id) == ("queued", "gpu", 3, "b1")
            assert (got.attempts, got.progress, got.result, got.error) == (0, 0.0, None, None)
            assert got.started_at is None and got.finished_at is None and not got.cancel_requested
            assert not got.finished

    run(backend, body)


def test_any_json_round_trips(backend: Backend) -> None:
    request: dict[str, Any] = {
        "text": "héllo 世界 🙂",
        "lone": "\ud800",
        "nested": [1, 2.5, None, True, {"k": []}],
    }

    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [request], lane="default")
        assert (await store.get(job.id, "alice")).request == request
        await store.claim("w", ["default"], 30)
        assert await store.complete(job.id, "w", result={"echo": request})
        assert (await store.get(job.id, "alice")).result == {"echo": request}

    run(backend, body)


def test_owner_none_is_anonymous(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit(None, [{}], lane="default")
        assert job.owner == "anonymous"
        assert (await store.get(job.id, None)).id == job.id
        assert (await store.get(job.id, "anonymous")).id == job.id
        assert [j.id for j in await store.list(None)] == [job.id]

    run(backend, body)


def test_other_owner_cannot_see_or_cancel(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{"secret": 1}], lane="default")
        with pytest.raises(NotFoundError) as theirs:
            await store.get(job.id, "mallory")
        with pytest.raises(NotFoundError) as missing:
            await store.get("job_doesnotexist", "mallory")
        # Nothing in the answer tells a foreign job from a missing one.
        assert type(theirs.value) is type(missing.value)
        assert str(theirs.value).replace(job.id, "X") == str(missing.value).replace("job_doesnotexist", "X")
        with pytest.raises(NotFoundError):
            await store.cancel(job.id, "mallory")
        with pytest.raises(NotFoundError):
            await store.cancel("job_doesnotexist", "alice")
        assert await store.list("mallory") == []
        assert (await store.get(job.id, "alice")).status == "queued"

    run(backend, body)


def test_list_newest_first_with_filter_and_pages(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        ids = [(await store.submit("alice", [{"i": i}], lane="default"))[0].id for i in range(5)]
        await store.submit("bob", [{"i": 99}], lane="default")
        assert [j.id for j in await store.list("alice")] == ids[::-1]
        assert [j.id for j in await store.list("alice", limit=2)] == [ids[4], ids[3]]
        assert [j.id for j in await store.list("alice", limit=2, offset=3)] == [ids[1], ids[0]]
        assert await store.list("alice", offset=10) == []
        await store.cancel(ids[1], "alice")
        assert [j.id for j in await store.list("alice", status="cancelled")] == [ids[1]]
        assert [j.id for j in await store.list("alice", status="queued")] == [ids[4], ids[3], ids[2], ids[0]]
        assert await store.list("alice", status="running") == []

    run(backend, body)


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"status": "done"}, {"limit": True}]
)
def test_list_rejects_bad_arguments(backend: Backend, kwargs: dict[str, Any]) -> None:
    async def body(store: JobStore) -> None:
        with pytest.raises(RequestError):
            await store.list("alice", **kwargs)

    run(backend, body)


class _NotJson:
    pass


@pytest.mark.parametrize(
    ("requests", "kwargs"),
    [
        ([], {}),
        ([{"ok": 1}, "not an object"], {}),
        ([{"ok": 1}, {"bad": math.nan}], {}),
        ([{"ok": 1}, {"bad": _NotJson()}], {}),
        ([{"ok": 1}], {"priority": 1001}),
        ([{"ok": 1}], {"priority": 1.5}),
        ([{"ok": 1}], {"lane": ""}),
        ([{"ok": 1}], {"batch_id": ""}),
    ],
    ids=["empty", "not-a-dict", "nan", "not-json", "priority-range", "priority-type", "lane", "batch-id"],
)
def test_invalid_batch_writes_nothing(backend: Backend, requests: list[Any], kwargs: dict[str, Any]) -> None:
    async def body(store: JobStore) -> None:
        with pytest.raises(RequestError):
            await store.submit("alice", requests, **{"lane": "default", **kwargs})
        assert await store.list("alice") == []
        assert await store.counts() == {}

    run(backend, body)


def test_claim_by_priority_then_fifo(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        low = await store.submit("alice", [{"n": 0}, {"n": 1}], lane="default", priority=-5)
        mid = await store.submit("alice", [{"n": 2}, {"n": 3}], lane="default")
        high = await store.submit("bob", [{"n": 4}], lane="default", priority=7)
        mid2 = await store.submit("alice", [{"n": 5}], lane="default")
        expected = [high[0], mid[0], mid[1], mid2[0], low[0], low[1]]
        claimed = [await store.claim("w", ["default"], 30) for _ in expected]
        assert [job.id if job else None for job in claimed] == [job.id for job in expected]
        assert await store.claim("w", ["default"], 30) is None

    run(backend, body)


def test_lanes_are_separate_queues(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [a_old] = await store.submit("alice", [{}], lane="a")
        [b_job] = await store.submit("alice", [{}], lane="b", priority=5)
        [a_new] = await store.submit("alice", [{}], lane="a", priority=1)
        assert await store.claim("w", ["c"], 30) is None
        assert await store.claim("w", [], 30) is None
        # Across lanes the best job wins: highest priority first, then the oldest.
        assert (job := await store.claim("w", ["a", "b"], 30)) and job.id == b_job.id
        assert (job := await store.claim("w", ["a"], 30)) and job.id == a_new.id
        assert (job := await store.claim("w", ["b", "a"], 30)) and job.id == a_old.id
        assert await store.claim("w", ["a", "b"], 30) is None

    run(backend, body)


def test_claim_marks_running_under_a_lease(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{"x": 1}], lane="default")
        claimed = await store.claim("w1", ["default"], 30)
        assert claimed is not None and claimed.id == job.id
        assert (claimed.status, claimed.attempts, claimed.request) == ("running", 1, {"x": 1})
        assert claimed.started_at is not None and claimed.started_at >= job.created_at
        assert (await store.get(job.id, "alice")).status == "running"
        assert await store.requeue_expired() == 0

    run(backend, body)


def test_complete_only_by_the_holder_and_only_once(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        assert not await store.complete(job.id, "w1", result={"too": "early"})  # not running yet
        await store.claim("w1", ["default"], 30)
        assert not await store.complete(job.id, "w2", result={"by": "w2"})
        assert not await store.complete(job.id, "w1", result={"by": "w1"}, attempt=2)
        assert await store.complete(job.id, "w1", result={"by": "w1"}, attempt=1)
        assert not await store.complete(job.id, "w1", result={"by": "again"})
        assert not await store.complete(job.id, "w1", error={"code": 5000, "msg": "late"})
        assert not await store.heartbeat(job.id, "w1", 30)
        done = await store.get(job.id, "alice")
        assert (done.status, done.result, done.error, done.progress) == ("succeeded", {"by": "w1"}, None, 1.0)
        assert done.finished_at is not None and done.finished

    run(backend, body)


def test_complete_with_error_and_bad_outcomes(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], 30)
        with pytest.raises(ValueError):
            await store.complete(job.id, "w1")
        with pytest.raises(ValueError):
            await store.complete(job.id, "w1", result={}, error={"code": 1, "msg": "x"})
        with pytest.raises(TypeError):
            await store.complete(job.id, "w1", error={"msg": "no code"})
        with pytest.raises(RequestError):
            await store.complete(job.id, "w1", result={"x": _NotJson()})
        assert await store.complete(job.id, "w1", error={"code": 1001, "msg": "bad image"})
        failed = await store.get(job.id, "alice")
        assert (failed.status, failed.error, failed.result) == (
            "failed",
            {"code": 1001, "msg": "bad image"},
            None,
        )

    run(backend, body)


def test_heartbeat_extends_the_lease_and_records_progress(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], 0.3)
        await asyncio.sleep(0.15)
        assert await store.heartbeat(job.id, "w1", 5, progress=0.4, attempt=1)
        assert not await store.heartbeat(job.id, "w2", 5)
        assert not await store.heartbeat(job.id, "w1", 5, attempt=2)
        await asyncio.sleep(0.3)  # past the first lease, well within the extended one
        assert await store.requeue_expired() == 0
        assert await store.heartbeat(job.id, "w1", 5, progress=7)  # clamped
        got = await store.get(job.id, "alice")
        assert (got.status, got.progress) == ("running", 1.0)
        assert await store.heartbeat(job.id, "w1", 5, progress=0.25)
        assert (await store.get(job.id, "alice")).progress == 0.25

    run(backend, body)


def test_cancel_queued_job(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job, other] = await store.submit("alice", [{}, {}], lane="default")
        cancelled = await store.cancel(job.id, "alice")
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert await store.is_cancel_requested(job.id)
        assert (got := await store.claim("w", ["default"], 30)) and got.id == other.id
        assert await store.claim("w", ["default"], 30) is None
        with pytest.raises(RequestError):
            await store.cancel(job.id, "alice")

    run(backend, body)


def test_cancel_running_job_is_a_request(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        await store.claim("w1", ["default"], 30)
        assert not await store.is_cancel_requested(job.id)
        pending = await store.cancel(job.id, "alice")
        assert (pending.status, pending.cancel_requested) == ("running", True)
        assert (await store.cancel(job.id, "alice")).status == "running"  # asking twice is fine
        assert await store.is_cancel_requested(job.id)
        assert not await store.heartbeat(job.id, "w1", 30)  # the worker learns it must stop
        assert await store.complete(job.id, "w1", cancelled=True)
        done = await store.get(job.id, "alice")
        assert (done.status, done.result, done.error) == ("cancelled", None, None)
        with pytest.raises(RequestError):
            await store.cancel(job.id, "alice")

    run(backend, body)


def test_cancel_finished_job_is_refused(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [ok, bad] = await store.submit("alice", [{}, {}], lane="default")
        await store.claim("w1", ["default"], 30)
        await store.claim("w1", ["default"], 30)
        await store.complete(ok.id, "w1", result={})
        await store.complete(bad.id, "w1", error={"code": 5000, "msg": "x"})
        for job in (ok, bad):
            with pytest.raises(RequestError):
                await store.cancel(job.id, "alice")
        assert await store.is_cancel_requested("job_unknown") is False

    run(backend, body)


def test_counts_per_lane_and_status(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        assert await store.counts() == {}
        jobs = await store.submit("alice", [{}] * 4, lane="gpu")
        await store.submit("bob", [{}], lane="cpu")
        await store.claim("w", ["gpu"], 30)
        await store.claim("w", ["gpu"], 30)
        await store.complete(jobs[0].id, "w", result={})
        await store.cancel(jobs[3].id, "alice")
        zero = dict.fromkeys(STATUSES, 0)
        assert await store.counts() == {
            "gpu": {**zero, "queued": 1, "running": 1, "succeeded": 1, "cancelled": 1},
            "cpu": {**zero, "queued": 1},
        }

    run(backend, body)


def test_jobs_survive_closing_the_store(backend: Backend) -> None:
    async def first(store: JobStore) -> list[str]:
        jobs = await store.submit("alice", [{"n": i} for i in range(3)], lane="default")
        await store.claim("w", ["default"], 30)
        return [job.id for job in jobs]

    ids = run(backend, first)

    async def second(store: JobStore) -> None:
        assert [(await store.get(i, "alice")).status for i in ids] == ["running", "queued", "queued"]

    run(backend, second)


def test_two_stores_claiming_concurrently_never_share_a_job(backend: Backend) -> None:
    async def main() -> None:
        one, two = backend.open(), backend.open()
        try:
            jobs = await one.submit("alice", [{"n": i} for i in range(200)], lane="default")

            async def drain(store: JobStore, worker: str) -> list[str]:
                got = []
                while (job := await store.claim(worker, ["default"], 30)) is not None:
                    got.append(job.id)
                return got

            claims = await asyncio.gather(
                drain(one, "w1"), drain(two, "w2"), drain(one, "w3"), drain(two, "w4")
            )
            flat = [job_id for got in claims for job_id in got]
            assert len(flat) == len(set(flat)) == 200
            assert set(flat) == {job.id for job in jobs}
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(main())
