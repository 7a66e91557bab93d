"""``POST /infer``, ``POST /infer_stream`` and ``GET /tasks``: translation only.

Streams decide errors before the first byte: the request is fully prepared and the first event
is awaited before the response starts, so a bad image is a normal JSON error; a failure after
that is sent as ``event: error`` carrying the code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.deps import caller, service_of
from vlserve.api.errors import error_body, request_id_of, to_vlserve_error
from vlserve.api.sse import event
from vlserve.runtime.protocol import TextDelta
from vlserve.schemas import Envelope, ErrorBody, InferRequest, StreamFinal
from vlserve.service.inference import InferenceService, Outcome
from vlserve.tasks import TASKS

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 413, 415, 422, 429, 451, 500, 503)
}


@router.post("/infer", response_model=Envelope, responses=ERROR_RESPONSES)
async def infer(
    body: InferRequest,
    request: Request,
    key_id: Annotated[str | None, Depends(caller)],
    service: Annotated[InferenceService, Depends(service_of)],
) -> Any:
    """Run a task. With ``options.stream: true`` this answers exactly like ``/infer_stream``."""
    if body.options.stream:
        return await _stream(body, request, key_id, service)
    request_id = request_id_of(request)
    outcome = await service.infer(body, request_id=request_id, key_id=key_id)
    return Envelope(request_id=request_id, code=outcome.code, msg=outcome.msg, result=outcome.result_model())


@router.post(
    "/infer_stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "token*, then final or error"},
               **ERROR_RESPONSES},
)
async def infer_stream(
    body: InferRequest,
    request: Request,
    key_id: Annotated[str | None, Depends(caller)],
    service: Annotated[InferenceService, Depends(service_of)],
) -> StreamingResponse:
    """Run a task and stream the answer as Server-Sent Events."""
    return await _stream(body, request, key_id, service)


async def _stream(body: InferRequest, request: Request, key_id: str | None,
                  service: InferenceService) -> StreamingResponse:
    request_id = request_id_of(request)
    run = await service.start(body, request_id=request_id, key_id=key_id)
    events = service.events(run)
    try:
        first = await anext(events)  # errors up to here become ordinary JSON error responses
    except BaseException:
        await events.aclose()
        raise

    async def body_iter() -> AsyncIterator[bytes]:
        try:
            current: TextDelta | Outcome | None = first
            while current is not None:
                yield _frame(current)
                current = await anext(events, None)
        except Exception as exc:  # after the first byte, errors travel as an event
            yield event("error", error_body(to_vlserve_error(exc), request_id))
        finally:
            await events.aclose()  # a client that went away cancels generation

    return StreamingResponse(body_iter(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(item: TextDelta | Outcome) -> bytes:
    if isinstance(item, TextDelta):
        return event("token", {"token": item.text, "index": item.index})
    final = StreamFinal(answer=item.answer, confidence=item.result.confidence, metadata=item.metadata,
                        request_id=item.request_id, code=item.code, msg=item.msg)
    return event("final", final.model_dump(mode="json"))


@router.get("/tasks")
async def list_tasks() -> JSONResponse:
    """The tasks this server runs, with their input rules and default options."""
    return JSONResponse({"tasks": [task.describe() for task in TASKS.values()]})
