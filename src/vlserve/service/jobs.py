"""Running async jobs through the same inference path as ``/infer``; the per-key job quota."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vlserve.config import Jobs
from vlserve.errors import DecodingError, OverloadedError, RateLimitError, VlserveError
from vlserve.jobs import (
    ANONYMOUS_OWNER,
    INTERNAL_ERROR,
    Job,
    JobStore,
    RedisJobStore,
    SQLiteJobStore,
    Worker,
    owner_of,
)
from vlserve.jobs.model import WORKER_DIED_MESSAGE
from vlserve.schemas import Envelope, InferRequest
from vlserve.service.call import Call
from vlserve.service.inference import InferenceService
from vlserve.service.longvideo import is_long_video, run_long_video
from vlserve.service.refine import refine_job

log = logging.getLogger("vlserve.jobs")

#: What a failed job says when the failure was ours (the details are in the server log).
INTERNAL_JOB_MESSAGE = "internal error while running the job; quote the job id when reporting it"
_PUBLIC_5XX = frozenset({INTERNAL_JOB_MESSAGE, INTERNAL_ERROR["msg"], WORKER_DIED_MESSAGE})


def open_store(settings: Jobs) -> JobStore:
    if settings.backend == "redis":
        return RedisJobStore(settings.redis_url)
    return SQLiteJobStore(settings.sqlite_path)


def public_error(err: VlserveError, job_id: str) -> VlserveError:
    """The error as the job's owner may read it: a failure of ours keeps its code but not its text,
    which can hold internals (paths, shapes); the text goes to the log with the job id."""
    if err.code < 5000 or isinstance(err, OverloadedError | DecodingError):
        return err
    log.error("job %s failed: %s", job_id, err)
    try:
        return type(err)(INTERNAL_JOB_MESSAGE)
    except TypeError:  # a class with other required arguments: the code is what matters
        public = VlserveError(INTERNAL_JOB_MESSAGE)
        public.code = err.code  # type: ignore[misc]
        return public


def public_job_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored job error as its owner may read it (jobs failed by older versions kept internal text)."""
    if error is None or not isinstance(error.get("code"), int) or error["code"] < 5000:
        return error
    if error["code"] in (OverloadedError.code, DecodingError.code) or error.get("msg") in _PUBLIC_5XX:
        return error
    return {**error, "msg": INTERNAL_JOB_MESSAGE}


def job_handler(service: InferenceService) -> Any:
    async def handle(job: Job) -> dict[str, Any]:
        request = InferRequest.model_validate(job.request)
        key_id = None if job.owner == ANONYMOUS_OWNER else job.owner
        while True:
            try:
                if is_long_video(request):  # window by window, reporting progress (service/longvideo.py)
                    outcome = await run_long_video(service, request, request_id=f"job_{job.id}", key_id=key_id)
                else:
                    call = Call.of(request)
                    call.job = True  # what only jobs may ask for (options.refine) is allowed
                    outcome = await service.infer(call, request_id=f"job_{job.id}", key_id=key_id)
                if request.options.refine is not None:  # SfM fitting, once the model's lane slot is free
                    await refine_job(service.settings, outcome, request.options.refine)
            except OverloadedError as err:
                # An accepted job waits for room in its lane instead of failing.
                await asyncio.sleep(min(err.retry_after, 5.0))
                continue
            except VlserveError as err:
                raise public_error(err, job.id) from None
            envelope = Envelope(request_id=f"job_{job.id}", code=outcome.code, msg=outcome.msg,
                                result=outcome.result_model())
            return envelope.model_dump(mode="json")

    return handle


async def check_quota(store: JobStore, key_id: str | None, new_bytes: int, settings: Jobs) -> None:
    """Refuse (4029) a submission that would take the key past ``jobs.max_stored_bytes_per_key``.

    Finished jobs count until they are purged (``jobs.retention_seconds``, ``jobs.max_finished``).
    Checked before the submission is written; concurrent submissions may pass it together.
    """
    limit = settings.max_stored_bytes_per_key
    if limit <= 0:
        return
    stored = await store.stored_bytes(owner_of(key_id))
    if stored + new_bytes > limit:
        raise RateLimitError(
            f"this key's stored jobs would take {stored + new_bytes} bytes, over its quota of {limit}; "
            "finished jobs are deleted after the server's retention period", retry_after=60.0)


def start_worker(settings: Jobs, store: JobStore, service: InferenceService) -> Worker | None:
    if settings.workers <= 0:
        return None
    lanes = list(service.scheduler.lanes)
    return Worker(store, job_handler(service), lanes=lanes, concurrency=settings.workers,
                  lease_seconds=settings.lease_seconds)
