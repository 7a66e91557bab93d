"""A worker cut off from the job store (a gateway that lost Redis but not its upstream): it stops its
job once a whole lease has passed without a heartbeat getting through, so that the replica which
takes the job over is the only one to run it to completion. Against both backends."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from tests.jobs.helpers import Backend, wait_until
from vlserve.jobs import Job, JobStore, Worker


class CutOff:
    """The store as seen from a worker on the wrong side of a network partition (**fault injection**
    at the external boundary): its first claim gets through, then every call fails (``error``) or
    never answers (``hang``), as with a Redis that became unreachable from this host only."""

    def __init__(self, store: JobStore, mode: Literal["error", "hang"]) -> None:
        self._store, self._mode = store, mode
        self.cut = False

    async def _fail(self) -> Any:
        if self._mode == "error":
            raise ConnectionError("Redis unreachable")
        await asyncio.Event().wait()  # never answers

    async def claim(self, *args: Any, **kwargs: Any) -> Job | None:
        if self.cut:
            return await self._fail()  # type: ignore[no-any-return]
        job = await self._store.claim(*args, **kwargs)
        self.cut = job is not None
        return job

    async def heartbeat(self, *args: Any, **kwargs: Any) -> bool:
        return await self._fail()  # type: ignore[no-any-return]

    async def complete(self, *args: Any, **kwargs: Any) -> bool:
        return await self._fail()  # type: ignore[no-any-return]

    async def requeue_expired(self) -> int:
        if self.cut:
            return await self._fail()  # type: ignore[no-any-return]
        return await self._store.requeue_expired()

    async def is_cancel_requested(self, job_id: str) -> bool:
        return await self._fail()  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_a_cut_off_worker_stops_its_job_before_another_takes_it(backend: Backend, mode: str) -> None:
    events: list[tuple[str, float]] = []

    async def body(store: JobStore) -> None:
        loop = asyncio.get_running_loop()
        [job] = await store.submit("alice", [{}], lane="default")

        async def long(job: Job) -> dict[str, Any]:
            events.append(("cut-off started", loop.time()))
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                events.append(("cut-off stopped", loop.time()))
                raise
            events.append(("cut-off finished", loop.time()))
            return {"by": "cut-off"}

        async def healthy(job: Job) -> dict[str, Any]:
            events.append(("healthy ran", loop.time()))
            return {"by": "healthy"}

        lease = 0.6
        first = Worker(CutOff(store, mode), long, lanes=["default"], lease_seconds=lease,  # type: ignore[arg-type]
                       poll_interval=0.02, heartbeat_interval=0.1, requeue_interval=30)
        first_task = asyncio.create_task(first.run())
        await wait_until(lambda: _status_is(store, job.id, "running"), what="the first claim")
        second = Worker(store, healthy, lanes=["default"], lease_seconds=5, poll_interval=0.02,
                        requeue_interval=0.05)
        second_task = asyncio.create_task(second.run())
        await wait_until(lambda: _status_is(store, job.id, "succeeded"), what="the second worker's result")
        await wait_until(lambda: _async(any(name == "cut-off stopped" for name, _ in events)),
                         what="the cut-off worker to stop its job")
        await first.stop(timeout=1)  # its loop may hang in a store call: stop() ends it anyway
        await second.stop(timeout=5)
        await asyncio.gather(first_task, second_task, return_exceptions=True)
        done = await store.get(job.id, "alice")
        assert (done.result, done.attempts) == ({"by": "healthy"}, 2)

    async def main() -> None:
        store = backend.open()
        try:
            await asyncio.wait_for(body(store), 30)
        finally:
            await store.aclose()

    asyncio.run(main())
    names = [name for name, _ in events]
    assert names.count("healthy ran") == 1 and "cut-off finished" not in names, names
    times = dict(events)
    # Stopped about one lease (0.6 s) after its claim: not run on for the 30 s its work would take.
    assert times["cut-off stopped"] - times["cut-off started"] < 3.0


async def _status_is(store: JobStore, job_id: str, status: str) -> bool:
    return (await store.get(job_id, "alice")).status == status


async def _async(value: bool) -> bool:
    return value
