"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``.

Enough of the Chat Completions API for the official ``openai`` SDK to work unchanged: text,
``image_url`` and ``video_url`` content parts (URLs or data URIs, fetched under the same policy
as ``/infer``), streaming chunks ending in ``[DONE]``, ``response_format`` with a JSON schema,
and usage. Errors use OpenAI's ``{"error": {...}}`` shape, carrying our code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from vlserve.api.deps import caller, service_of
from vlserve.api.errors import error_headers, public_message, request_id_of, status_for, to_vlserve_error
from vlserve.api.sse import event
from vlserve.errors import RequestError, TooManyInputsError
from vlserve.inputs import load_source
from vlserve.media import load_image
from vlserve.runtime.protocol import (
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    Part,
    SamplingParams,
    TextDelta,
    TextPart,
    VideoPart,
)
from vlserve.service.inference import InferenceService

router = APIRouter(prefix="/v1")


class URLRef(BaseModel):
    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "image_url", "video_url"]
    text: str | None = None
    image_url: URLRef | None = None
    video_url: URLRef | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart] | None = None


class JSONSchemaFormat(BaseModel):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None


def _openai_error(request: Request, exc: BaseException) -> JSONResponse:
    err = to_vlserve_error(exc)
    body = {"error": {"message": public_message(err), "type": type(err).__name__, "code": err.code,
                      "param": None, "request_id": request_id_of(request)}}
    return JSONResponse(body, status_code=status_for(err), headers=error_headers(err))


@router.get("/models")
async def list_models(
    key_id: Annotated[str | None, Depends(caller)], service: Annotated[InferenceService, Depends(service_of)]
) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": service.engine.model_name, "object": "model", "created": 0,
                                        "owned_by": "vlserve"}]}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest,
    request: Request,
    key_id: Annotated[str | None, Depends(caller)],
    service: Annotated[InferenceService, Depends(service_of)],
) -> JSONResponse | StreamingResponse:
    request_id = request_id_of(request)
    ticket = None
    try:
        ticket = service.scheduler.lane("interactive").admit()
        generation = await _to_generation(body, service, request_id)
        service.moderator.check(_all_text(body), stage="input", request_id=request_id, key_id=key_id,
                                input_hashes=[])
        events = ticket.stream(generation)
        ticket = None  # the stream owns the lane place now
        first = await anext(events)
        if body.stream:
            return StreamingResponse(_chunks(body, request_id, service.engine.model_name, first, events),
                                     media_type="text/event-stream")
        result = first
        async for event in events:
            result = event
        assert isinstance(result, GenerationResult)
        service.moderator.check(result.text, stage="output", request_id=request_id, key_id=key_id,
                                input_hashes=[])
    except Exception as exc:
        return _openai_error(request, exc)
    finally:
        if ticket is not None:
            ticket.release()
    return JSONResponse({
        "id": "chatcmpl-" + request_id.removeprefix("req_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": service.engine.model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": _finish(result), "logprobs": None}],
        "usage": _usage(result),
    })


def _all_text(body: ChatRequest) -> str:
    texts = []
    for m in body.messages:
        if isinstance(m.content, str):
            texts.append(m.content)
        elif m.content:
            texts.extend(p.text or "" for p in m.content)
    return "\n".join(texts)


async def _to_generation(body: ChatRequest, service: InferenceService, request_id: str) -> GenerationRequest:
    settings = service.settings
    max_tokens = body.max_completion_tokens or body.max_tokens or settings.limits.default_max_tokens
    if max_tokens > settings.limits.max_tokens:
        raise RequestError(f"max_tokens may be at most {settings.limits.max_tokens} on this server")
    schema = None
    if body.response_format is not None and body.response_format.type == "json_object":
        schema = {"type": "object"}
    elif body.response_format is not None and body.response_format.type == "json_schema":
        if body.response_format.json_schema is None:
            raise RequestError("response_format json_schema needs a 'json_schema' object with a 'schema'")
        schema = body.response_format.json_schema.schema_ or {"type": "object"}
    messages = [await _message(m, service) for m in body.messages]
    n_images = sum(isinstance(p, ImagePart) for m in messages for p in m.parts)
    n_videos = sum(isinstance(p, VideoPart) for m in messages for p in m.parts)
    if n_images > settings.limits.max_images or n_videos > settings.limits.max_videos:
        raise TooManyInputsError(f"at most {settings.limits.max_images} images and {settings.limits.max_videos} "
                                 "videos per request")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    params = SamplingParams(
        max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
        top_p=body.top_p or 1.0, presence_penalty=body.presence_penalty or 0.0, seed=body.seed, stop=stop,
        json_schema=schema,
    )
    return GenerationRequest(messages, params, request_id=request_id)


async def _message(m: ChatMessage, service: InferenceService) -> Message:
    role = "system" if m.role == "developer" else m.role
    if m.content is None or isinstance(m.content, str):
        return Message(role, m.content or "")  # type: ignore[arg-type]
    parts: list[Part] = []
    for part in m.content:
        if part.type == "text":
            parts.append(TextPart(part.text or ""))
            continue
        ref = part.image_url if part.type == "image_url" else part.video_url
        if ref is None:
            raise RequestError(f"a {part.type} part needs {{'{part.type}': {{'url': ...}}}}")
        source = await load_source(ref.url, fetcher=service.fetcher, local_root=service.settings.fetching.local_root,
                                   max_bytes=service.settings.limits.max_input_bytes)
        if part.type == "image_url":
            parts.append(ImagePart(await asyncio.to_thread(load_image, source.data, service.vision)))
        else:
            parts.append(VideoPart(source.data))
    return Message(role, parts)  # type: ignore[arg-type]


def _finish(result: GenerationResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(result: GenerationResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens}


async def _chunks(body: ChatRequest, request_id: str, model: str, first: object,
                  events: AsyncIterator[object]) -> AsyncIterator[bytes]:
    base = {"id": "chatcmpl-" + request_id.removeprefix("req_"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        payload: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            payload["usage"] = usage
        return event(None, payload)

    yield chunk({"role": "assistant", "content": ""})
    try:
        current: object = first
        while current is not None:
            if isinstance(current, TextDelta):
                yield chunk({"content": current.text})
            elif isinstance(current, GenerationResult):
                yield chunk({}, _finish(current))
                if body.stream_options and body.stream_options.include_usage:
                    yield event(None, {**base, "choices": [], "usage": _usage(current)})
            current = await anext(events, None)  # type: ignore[call-overload]
    except Exception as exc:  # after the first byte, errors travel in the stream
        err = to_vlserve_error(exc)
        yield event(None, {"error": {"message": public_message(err), "code": err.code}})
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    yield event(None, "[DONE]")
