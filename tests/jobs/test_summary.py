"""JobStore.summary on both backends: one job's fields without its bodies, following its progress, and
NotFoundError for a missing job or another owner's, like get."""

from __future__ import annotations

import pytest

from tests.jobs.helpers import Backend, run
from vlserve.errors import NotFoundError
from vlserve.jobs import JobStore, JobSummary


def test_summary_follows_a_job_without_its_bodies(backend: Backend) -> None:
    async def body(store: JobStore) -> None:
        (job,) = await store.submit("alice", [{"task": "ocr", "blob": "x" * 1000}], lane="batch", priority=2)
        first = await store.summary(job.id, "alice")
        assert isinstance(first, JobSummary) and not hasattr(first, "request")
        assert (first.id, first.status, first.task, first.lane, first.priority, first.progress) == (
            job.id, "queued", "ocr", "batch", 2, 0.0)
        claimed = await store.claim("w1", ["batch"], 30)
        assert claimed is not None
        assert await store.heartbeat(job.id, "w1", 30, 0.25, attempt=claimed.attempts)
        running = await store.summary(job.id, "alice")
        assert (running.status, running.progress, running.attempts) == ("running", 0.25, 1)
        assert await store.complete(job.id, "w1", error={"code": 1001, "msg": "bad"}, attempt=claimed.attempts)
        done = await store.summary(job.id, "alice")
        assert done.status == "failed" and done.error == {"code": 1001, "msg": "bad"}
        for job_id, owner in ((job.id, "bob"), (job.id, None), ("job_" + "0" * 24, "alice")):
            with pytest.raises(NotFoundError):
                await store.summary(job_id, owner)

    run(backend, body)
