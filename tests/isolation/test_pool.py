"""WorkerPool: jobs run in real child processes under real limits; a job that passes one is killed alone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.isolation import helpers
from vlserve.errors import DocumentError
from vlserve.isolation import WorkerCrashed, WorkerLimits, WorkerOutOfMemory, WorkerPool, WorkerTimeout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # The workers import this test package by name, so they need the repository on their path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    made: list[WorkerPool] = []

    def make(workers: int = 1, **limits: object) -> WorkerPool:
        settings = {"wall_seconds": 10.0, "cpu_seconds": 10.0, "memory_bytes": 256 << 20, **limits}
        pool = WorkerPool("test", workers, WorkerLimits(modules=("tests.isolation.",), **settings))  # type: ignore[arg-type]
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def test_runs_in_another_process_and_reuses_it(pool_factory) -> None:
    pool = pool_factory()
    first = pool.run(helpers.pid)
    assert first != os.getpid()
    assert pool.run(helpers.pid) == first
    assert pool.run(helpers.echo, {"a": [1, 2]}) == {"a": [1, 2]}


def test_wall_clock_deadline_kills_the_worker_and_a_new_one_takes_over(pool_factory) -> None:
    pool = pool_factory(wall_seconds=1.0)
    before = pool.run(helpers.pid)
    started = time.monotonic()
    with pytest.raises(WorkerTimeout):
        pool.run(helpers.sleep, 30)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)  # the worker is gone, not left sleeping
    after = pool.run(helpers.pid)
    assert after != before


def test_cpu_limit_is_enforced_by_the_kernel(pool_factory) -> None:
    pool = pool_factory(wall_seconds=30.0, cpu_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(WorkerTimeout):
        pool.run(helpers.spin, 20)
    assert time.monotonic() - started < 15
    # Each job gets its own allowance: short jobs keep working after many seconds in total.
    assert pool.run(helpers.spin, 0.3) > 0


def test_memory_limit(pool_factory) -> None:
    pool = pool_factory(memory_bytes=128 << 20)
    with pytest.raises(WorkerOutOfMemory):
        pool.run(helpers.allocate, 512)
    assert pool.run(helpers.allocate, 16) == 16 << 20


def test_crash_is_contained(pool_factory) -> None:
    pool = pool_factory()
    with pytest.raises(WorkerCrashed):
        pool.run(helpers.crash)
    assert pool.run(helpers.echo, 7) == 7


def test_vlserve_errors_come_back_typed_others_do_not_leak(pool_factory) -> None:
    pool = pool_factory()
    with pytest.raises(DocumentError) as info:
        pool.run(helpers.refuse, "page 3 is broken")
    assert info.value.code == 1004 and info.value.message == "page 3 is broken"
    assert info.value.details == {"page": 3}
    with pytest.raises(WorkerCrashed) as crashed:
        pool.run(helpers.fail)
    assert "internal detail" not in str(crashed.value)


def test_functions_outside_the_allowed_modules_are_refused(pool_factory) -> None:
    pool = pool_factory()
    with pytest.raises(WorkerCrashed):
        pool.run(os.getcwd)


def test_a_slow_job_does_not_hold_the_other_worker(pool_factory) -> None:
    pool = pool_factory(workers=2, wall_seconds=3.0)

    async def scenario() -> None:
        slow = asyncio.ensure_future(pool.arun(helpers.sleep, 30))
        await asyncio.sleep(0.2)
        assert await asyncio.wait_for(pool.arun(helpers.echo, "quick"), 20) == "quick"
        assert not slow.done()
        with pytest.raises(WorkerTimeout):
            await slow

    asyncio.run(scenario())


def test_cancelling_the_awaiting_task_kills_the_running_job(pool_factory) -> None:
    pool = pool_factory(wall_seconds=30.0)
    worker_pid = pool.run(helpers.pid)

    async def scenario() -> None:
        job = asyncio.ensure_future(pool.arun(helpers.sleep, 30))
        await asyncio.sleep(0.3)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(scenario())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the abandoned job's worker is still running")
    assert pool.run(helpers.echo, "next") == "next"


def test_a_worker_left_holding_memory_is_replaced(pool_factory) -> None:
    pool = pool_factory(memory_bytes=128 << 20)
    small = pool.run(helpers.leak, 8)
    assert pool.run(helpers.pid) == small  # a little kept memory: the worker stays
    big = pool.run(helpers.leak, 96)  # most of an allowance kept: the next job gets a fresh worker
    assert big == small
    assert pool.run(helpers.pid) != big


def test_warm_starts_the_workers_before_the_first_job(pool_factory) -> None:
    pool = pool_factory(workers=2)
    pool.warm()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pool.pids()) < 2:
        time.sleep(0.05)
    started = set(pool.pids())
    assert len(started) == 2
    assert pool.run(helpers.pid) in started


def test_the_interpreter_exits_without_waiting_for_a_running_job() -> None:
    import subprocess
    import sys

    script = (
        "import time\n"
        "from tests.isolation import helpers\n"
        "from vlserve.isolation import WorkerLimits, WorkerPool\n"
        "pool = WorkerPool('exit', 1, WorkerLimits(wall_seconds=60, modules=('tests.isolation.',)))\n"
        "pool.submit(helpers.sleep, 60)\n"
        "time.sleep(1.0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, timeout=50, check=True)
    assert time.monotonic() - started < 20


def test_workers_run_at_the_configured_niceness(pool_factory) -> None:
    pool = pool_factory(nice=7)
    worker = pool.run(helpers.pid)
    assert os.getpriority(os.PRIO_PROCESS, worker) == os.getpriority(os.PRIO_PROCESS, 0) + 7


def test_workers_import_their_libraries_at_that_niceness_already(pool_factory) -> None:
    # A worker killed at a limit is replaced: its start-up imports must not take the CPU at full priority.
    pool = pool_factory(nice=7, preload=("tests.isolation.helpers",))
    assert pool.run(helpers.import_niceness) == os.getpriority(os.PRIO_PROCESS, 0) + 7


def test_the_servers_pools_are_niced_by_default() -> None:
    from vlserve.config import Limits
    from vlserve.isolation import configure, document_pool

    configure(Limits())
    assert document_pool().limits.nice == Limits().worker_nice == 10
