"""``/jobs``: asynchronous requests for pipelines that need no immediate answer.

``POST /jobs`` takes one ``/infer`` body or a list and answers 202 with the job ids at once;
``GET /jobs/{id}`` gives status, progress and the result envelope; ``DELETE /jobs/{id}`` cancels;
``GET /jobs`` lists the caller's own jobs as summaries (no request or result bodies);
``GET /jobs/{id}/events`` streams a job's progress and then its outcome (Server-Sent Events). Another key's
job is indistinguishable from a missing one. Stored jobs count against the key's quota
(``jobs.max_stored_bytes_per_key``) until the server purges them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.deps import caller
from vlserve.api.errors import error_body, request_id_of, to_vlserve_error
from vlserve.api.sse import event
from vlserve.errors import TooManyInputsError, VlserveError
from vlserve.jobs import STATUSES, Job, JobStore, JobSummary, owner_of
from vlserve.jobs.model import dump_json
from vlserve.schemas import InferRequest
from vlserve.service.job_events import EventStreams, follow_job
from vlserve.service.jobs import check_quota, public_job_error
from vlserve.service.privacy import refuse_jobs
from vlserve.service.refine import check_submission
from vlserve.tasks import get_task

router = APIRouter(prefix="/jobs")


def store_of(request: Request) -> JobStore:
    store: JobStore | None = request.app.state.jobs
    if store is None:
        raise VlserveError("async jobs are not available on this server")
    return store


def job_view(job: Job | JobSummary) -> dict[str, Any]:
    """A job as the API shows it; a summary (from a listing) has no ``result``."""
    view = {
        "id": job.id, "status": job.status, "task": job.task, "lane": job.lane,
        "priority": job.priority, "progress": job.progress, "attempts": job.attempts,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "error": public_job_error(job.error), "batch_id": job.batch_id,
    }
    if isinstance(job, Job):
        view["result"] = job.result
    return view


@router.post("", status_code=202)
async def submit(body: InferRequest | list[InferRequest], request: Request,
                 key_id: Annotated[str | None, Depends(caller)],
                 store: Annotated[JobStore, Depends(store_of)]) -> JSONResponse:
    """Queue one request or a list; each becomes a job in its task's lane."""
    refuse_jobs(request.app.state.settings)  # privacy mode stores nothing (4030)
    bodies = body if isinstance(body, list) else [body]
    limit = request.app.state.settings.jobs.max_batch
    if not bodies or len(bodies) > limit:
        raise TooManyInputsError(f"a job batch holds 1 to {limit} requests, got {len(bodies)}")
    request_id = request_id_of(request)
    payloads = [item.model_dump(mode="json") for item in bodies]
    await check_quota(store, key_id, sum(len(dump_json(p, "a job request")) for p in payloads),
                      request.app.state.settings.jobs)
    # One submit per lane and priority keeps that part of the batch atomic; every task is checked
    # before anything is queued. The answer lists the jobs in request order, whatever the grouping.
    groups: dict[tuple[str, int], list[int]] = {}
    for index, item in enumerate(bodies):
        check_submission(item, request.app.state.settings)  # options.refine that cannot run: 4000 now
        groups.setdefault((get_task(item.task).lane, item.options.priority), []).append(index)
    jobs: list[Job | None] = [None] * len(bodies)
    for (lane, priority), indices in groups.items():
        made = await store.submit(owner_of(key_id), [payloads[i] for i in indices],
                                  lane=lane, priority=priority, batch_id=request_id)
        for index, job in zip(indices, made, strict=True):
            jobs[index] = job
    return JSONResponse(status_code=202, content={
        "request_id": request_id, "code": 0, "msg": "accepted",
        "jobs": [{"id": j.id, "status": j.status, "task": j.request.get("task"), "lane": j.lane,
                  "priority": j.priority} for j in jobs if j is not None],
    })


@router.get("")
async def list_jobs(key_id: Annotated[str | None, Depends(caller)],
                    store: Annotated[JobStore, Depends(store_of)],
                    status: Annotated[str | None, Query(description=" | ".join(STATUSES))] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    from vlserve.errors import RequestError

    if status is not None and status not in STATUSES:
        raise RequestError(f"status must be one of {', '.join(STATUSES)}")
    jobs = await store.list(owner_of(key_id), status=status, limit=limit, offset=offset)
    return {"jobs": [job_view(j) for j in jobs]}


@router.get("/{job_id}")
async def get_job(job_id: str, key_id: Annotated[str | None, Depends(caller)],
                  store: Annotated[JobStore, Depends(store_of)]) -> dict[str, Any]:
    return job_view(await store.get(job_id, owner_of(key_id)))


@router.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}},
                                                "description": "progress*, then final (or error)"}})
async def job_events(job_id: str, request: Request, key_id: Annotated[str | None, Depends(caller)],
                     store: Annotated[JobStore, Depends(store_of)]) -> StreamingResponse:
    """Follow a job as Server-Sent Events: ``progress`` as it moves, then ``final`` (what
    ``GET /jobs/{id}`` answers once it is finished); ``error`` if the stream itself fails."""
    settings, owner = request.app.state.settings.jobs, owner_of(key_id)
    first = await store.summary(job_id, owner)  # another key's job: 404 like a missing one
    streams: EventStreams | None = getattr(request.app.state, "job_streams", None)
    if streams is None:
        streams = request.app.state.job_streams = EventStreams(settings)
    release = streams.open(owner)  # 4029 / 2001 past the caps
    updates = follow_job(store, first, owner, settings)
    request_id = request_id_of(request)

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for update in updates:
                if update.kind == "keepalive":
                    yield b": keep-alive\n\n"
                elif update.kind == "progress":
                    assert update.job is not None
                    yield event("progress", {"id": update.job.id, "status": update.job.status,
                                             "progress": update.job.progress, "attempts": update.job.attempts})
                else:
                    assert update.job is not None
                    yield event("final", job_view(update.job))
        except Exception as exc:  # after the first byte, errors travel as an event
            yield event("error", error_body(to_vlserve_error(exc), request_id))
        finally:
            await updates.aclose()

    return _EventStream(frames(), release)


class _EventStream(StreamingResponse):
    """An SSE response that gives its stream slot back however it ends (done, failed, or the
    client went away: Starlette then cancels the response while it waits)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            if isinstance(self.body_iterator, AsyncGenerator):
                await self.body_iterator.aclose()


@router.delete("/{job_id}")
async def cancel_job(job_id: str, key_id: Annotated[str | None, Depends(caller)],
                     store: Annotated[JobStore, Depends(store_of)]) -> dict[str, Any]:
    return job_view(await store.cancel(job_id, owner_of(key_id)))
