"""Running async jobs through the same inference path as ``/infer``."""

from __future__ import annotations

import asyncio
from typing import Any

from vlserve.config import Jobs
from vlserve.errors import OverloadedError
from vlserve.jobs import ANONYMOUS_OWNER, Job, JobStore, RedisJobStore, SQLiteJobStore, Worker
from vlserve.schemas import Envelope, InferRequest
from vlserve.service.inference import InferenceService


def open_store(settings: Jobs) -> JobStore:
    if settings.backend == "redis":
        return RedisJobStore(settings.redis_url)
    return SQLiteJobStore(settings.sqlite_path)


def job_handler(service: InferenceService) -> Any:
    async def handle(job: Job) -> dict[str, Any]:
        request = InferRequest.model_validate(job.request)
        key_id = None if job.owner == ANONYMOUS_OWNER else job.owner
        while True:
            try:
                outcome = await service.infer(request, request_id=f"job_{job.id}", key_id=key_id)
            except OverloadedError as err:
                # An accepted job waits for room in its lane instead of failing.
                await asyncio.sleep(min(err.retry_after, 5.0))
                continue
            envelope = Envelope(request_id=f"job_{job.id}", code=outcome.code, msg=outcome.msg,
                                result=outcome.result_model())
            return envelope.model_dump(mode="json")

    return handle


def start_worker(settings: Jobs, store: JobStore, service: InferenceService) -> Worker | None:
    if settings.workers <= 0:
        return None
    lanes = list(service.scheduler.lanes)
    return Worker(store, job_handler(service), lanes=lanes, concurrency=settings.workers,
                  lease_seconds=settings.lease_seconds)
