"""Real worker processes: a SIGKILL mid-batch loses nothing, and replicas share one queue."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

from tests.jobs.helpers import Backend, read_executions, start_worker, stop_process, wait_ready, wait_until
from vlserve.jobs import JobStore

N_JOBS = 30
CONCURRENCY = 4


def test_sigkill_mid_batch_completes_every_job_exactly_once(backend: Backend, tmp_path: Path) -> None:
    executions = tmp_path / "executions.txt"
    worker_options = ("--concurrency", str(CONCURRENCY), "--lease", "1", "--sleep", "0.1", "0.3")

    async def main() -> None:
        store = backend.open()
        first = start_worker(backend, executions, *worker_options)
        second = None
        try:
            wait_ready(first)
            jobs = await store.submit("alice", [{"n": i} for i in range(N_JOBS)], lane="default")
            ids = {job.id for job in jobs}

            async def some_done_some_running() -> bool:
                counts = (await store.counts())["default"]
                return counts["succeeded"] >= 5 and counts["running"] >= 1

            await wait_until(some_done_some_running, timeout=20, what="the first worker to be mid-batch")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=5)
            # With the worker dead, exactly the jobs it held are left running.
            in_flight = {job.id for job in await store.list("alice", status="running")}
            assert 1 <= len(in_flight) <= CONCURRENCY

            second = start_worker(backend, executions, *worker_options)
            wait_ready(second)

            async def all_done() -> bool:
                return (await store.counts())["default"]["succeeded"] == N_JOBS

            await wait_until(all_done, timeout=30, interval=0.05, what="every job to succeed")
            final = {job_id: await store.get(job_id, "alice") for job_id in ids}
        finally:
            for proc in (first, second):
                if proc is not None:
                    stop_process(proc)
            await store.aclose()

        assert all(job.status == "succeeded" for job in final.values())
        # One result per job, naming that job, written by one of the two processes.
        assert all(job.result is not None and job.result["job_id"] == job.id for job in final.values())
        assert {job.result["pid"] for job in final.values() if job.result} <= {first.pid, second.pid}
        runs = read_executions(executions)
        per_job = Counter(job_id for job_id, _ in runs)
        assert set(per_job) == ids, "every job ran"
        rerun = {job_id for job_id, n in per_job.items() if n > 1}
        # Only jobs that were in flight at the kill ran again, each once more, in the new process.
        assert rerun <= in_flight and len(rerun) <= CONCURRENCY
        assert all(per_job[job_id] == 2 for job_id in rerun)
        for job_id in in_flight:
            assert final[job_id].attempts == 2 and final[job_id].result["pid"] == second.pid  # type: ignore[index]
        for job_id in ids - in_flight:
            assert final[job_id].attempts == 1 and per_job[job_id] == 1
        counts = await _counts(backend)
        assert counts["default"]["succeeded"] == N_JOBS and counts["default"]["running"] == 0

    asyncio.run(main())


def test_two_worker_processes_share_the_queue_without_overlap(backend: Backend, tmp_path: Path) -> None:
    executions = tmp_path / "executions.txt"
    options = ("--concurrency", "3", "--lease", "10", "--sleep", "0.03", "0.08")
    n_jobs = 40

    async def main() -> None:
        store = backend.open()
        procs = [start_worker(backend, executions, *options) for _ in range(2)]
        try:
            for proc in procs:
                wait_ready(proc)
            jobs = await store.submit("alice", [{"n": i} for i in range(n_jobs)], lane="default")

            async def all_done() -> bool:
                return (await store.counts())["default"]["succeeded"] == n_jobs

            await wait_until(all_done, timeout=30, interval=0.05, what="every job to succeed")
            results = [(await store.get(job.id, "alice")).result for job in jobs]
        finally:
            for proc in procs:
                stop_process(proc)
            await store.aclose()
        runs = read_executions(executions)
        assert sorted(job_id for job_id, _ in runs) == sorted(job.id for job in jobs), (
            "each job ran exactly once"
        )
        assert {pid for _, pid in runs} == {proc.pid for proc in procs}, "both replicas took work"
        assert all(result is not None for result in results)

    asyncio.run(main())


async def _counts(backend: Backend) -> dict[str, dict[str, int]]:
    store: JobStore = backend.open()
    try:
        return await store.counts()
    finally:
        await store.aclose()
