"""The Worker loop in-process, against both backends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.jobs.helpers import Backend, wait_until
from vlserve.errors import ImageError
from vlserve.jobs import INTERNAL_ERROR, Job, JobStore, Worker, report_progress

Body = Callable[[JobStore], Awaitable[None]]


def run(backend: Backend, body: Body) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            await asyncio.wait_for(body(store), 20)
        finally:
            await store.aclose()

    asyncio.run(main())


def fast_worker(
    store: JobStore, handler: Callable[[Job], Awaitable[dict[str, Any]]], **options: Any
) -> Worker:
    settings: dict[str, Any] = {
        "lanes": ["default"],
        "lease_seconds": 5,
        "poll_interval": 0.02,
        "heartbeat_interval": 0.05,
        **options,
    }
    return Worker(store, handler, **settings)


async def status_is(store: JobStore, job_id: str, *statuses: str) -> bool:
    return (await store.get(job_id, "alice")).status in statuses


async def all_status(store: JobStore, jobs: list[Job], status: str) -> bool:
    return all([await status_is(store, job.id, status) for job in jobs])


def test_worker_runs_jobs_within_its_concurrency(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        jobs = await store.submit("alice", [{"n": i} for i in range(6)], lane="default")
        running = peak = 0

        async def handler(job: Job) -> dict[str, Any]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            return {"double": job.request["n"] * 2}

        worker = fast_worker(store, handler, concurrency=2)
        task = asyncio.create_task(worker.run())
        await wait_until(lambda: all_status(store, jobs, "succeeded"), what="every job succeeded")
        await worker.stop()
        await task
        assert peak == 2
        for job in jobs:
            done = await store.get(job.id, "alice")
            assert (done.result, done.progress, done.attempts) == ({"double": job.request["n"] * 2}, 1.0, 1)
        assert worker.active_jobs == []

    run(backend, body)


def test_worker_records_errors_without_leaking_details(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: JobStore) -> None:
        kinds = ["vlserve", "crash", "not-a-dict", "not-json"]
        jobs = await store.submit("alice", [{"kind": kind} for kind in kinds], lane="default")

        async def handler(job: Job) -> Any:
            kind = job.request["kind"]
            if kind == "vlserve":
                raise ImageError("the image is corrupt")
            if kind == "crash":
                raise RuntimeError("secret internal detail")
            if kind == "not-a-dict":
                return ["a", "list"]
            return {"value": object()}

        worker = fast_worker(store, handler, concurrency=4)
        task = asyncio.create_task(worker.run())
        await wait_until(lambda: all_status(store, jobs, "failed"), what="every job failed")
        await worker.stop()
        await task
        errors = [(await store.get(job.id, "alice")).error for job in jobs]
        assert errors == [
            {"code": 1001, "msg": "the image is corrupt"},
            INTERNAL_ERROR,
            INTERNAL_ERROR,
            INTERNAL_ERROR,
        ]
        assert "secret internal detail" in caplog.text  # logged for operators, never stored

    with caplog.at_level(logging.ERROR, logger="vlserve.jobs"):
        run(backend, body)


def test_cancelling_a_running_job_cancels_its_handler(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        started, handler_cancelled = asyncio.Event(), asyncio.Event()

        async def handler(job: Job) -> dict[str, Any]:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise
            return {}

        worker = fast_worker(store, handler)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        assert (await store.cancel(job.id, "alice")).cancel_requested
        await wait_until(lambda: status_is(store, job.id, "cancelled"), what="cancelled")
        assert handler_cancelled.is_set()
        await worker.stop()
        await task
        done = await store.get(job.id, "alice")
        assert (done.result, done.error, done.attempts) == (None, None, 1)

    run(backend, body)


def test_progress_reported_by_the_handler_reaches_the_store(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        release = asyncio.Event()

        async def handler(job: Job) -> dict[str, Any]:
            report_progress(0.5)
            await release.wait()
            return {"ok": True}

        report_progress(0.9)  # outside a job: ignored
        worker = fast_worker(store, handler)
        task = asyncio.create_task(worker.run())

        async def half_done() -> bool:
            return (await store.get(job.id, "alice")).progress == 0.5

        await wait_until(half_done, what="progress 0.5")
        release.set()
        await wait_until(lambda: status_is(store, job.id, "succeeded"))
        assert (await store.get(job.id, "alice")).progress == 1.0
        await worker.stop()
        await task

    run(backend, body)


def test_a_stalled_worker_loses_its_job_and_its_late_result(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        release = asyncio.Event()

        async def stalled(job: Job) -> dict[str, Any]:
            await release.wait()
            return {"by": "stalled"}

        async def healthy(job: Job) -> dict[str, Any]:
            return {"by": "healthy"}

        # Heartbeats far apart from a short lease: this worker looks dead to everyone else.
        first = fast_worker(store, stalled, lease_seconds=0.2, heartbeat_interval=30, requeue_interval=30)
        first_task = asyncio.create_task(first.run())
        await wait_until(lambda: status_is(store, job.id, "running"))
        second = fast_worker(store, healthy, requeue_interval=0.05)
        second_task = asyncio.create_task(second.run())
        await wait_until(lambda: status_is(store, job.id, "succeeded"), what="the second worker's result")
        release.set()  # the stalled handler now finishes; its completion must be refused
        await first.stop(timeout=5)
        await second.stop()
        await asyncio.gather(first_task, second_task)
        done = await store.get(job.id, "alice")
        assert (done.result, done.attempts) == ({"by": "healthy"}, 2)
        assert "outcome is discarded" in caplog.text

    with caplog.at_level(logging.WARNING, logger="vlserve.jobs"):
        run(backend, body)


def test_stop_waits_for_running_jobs_and_claims_no_more(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        jobs = await store.submit("alice", [{}, {}, {}], lane="default")
        started = asyncio.Event()

        async def handler(job: Job) -> dict[str, Any]:
            started.set()
            await asyncio.sleep(0.2)
            return {"id": job.id}

        worker = fast_worker(store, handler)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(worker.stop(), 5)
        assert task.done()
        statuses = [(await store.get(job.id, "alice")).status for job in jobs]
        assert statuses == ["succeeded", "queued", "queued"]

    run(backend, body)


def test_stop_with_timeout_abandons_the_job_to_its_lease(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        [job] = await store.submit("alice", [{}], lane="default")
        started = asyncio.Event()

        async def handler(job: Job) -> dict[str, Any]:
            started.set()
            await asyncio.sleep(30)
            return {}

        worker = fast_worker(store, handler, lease_seconds=0.2)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(worker.stop(timeout=0.1), 5)
        assert task.done() and worker.active_jobs == []
        assert (await store.get(job.id, "alice")).status == "running"
        await asyncio.sleep(0.3)
        assert await store.requeue_expired() == 1
        assert (await store.get(job.id, "alice")).status == "queued"

    run(backend, body)


def test_worker_arguments_are_checked() -> None:
    async def handler(job: Job) -> dict[str, Any]:
        return {}

    store: Any = object()
    with pytest.raises(ValueError):
        Worker(store, handler, lanes=[])
    with pytest.raises(ValueError):
        Worker(store, handler, lanes=["a"], concurrency=0)
    with pytest.raises(ValueError):
        Worker(store, handler, lanes=["a"], lease_seconds=0)
