"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``: translation only.

A chat request becomes a :class:`~vlserve.service.call.Call` with a per-request
:class:`~vlserve.tasks.chat.Chat` task and goes through :class:`InferenceService` like any task
(admission, limits, inputs, moderation of input and of streamed output, metrics, audit); the
answer comes back in the Chat Completions shape. Errors use OpenAI's ``{"error": {...}}`` shape
(see :func:`vlserve.api.errors.openai_error_body`), so the official SDK raises the matching
exception with our message.

Supported: text, ``image_url`` and ``video_url`` parts; streaming (``[DONE]``-terminated, usage
with ``stream_options.include_usage``); ``response_format`` (``json_object``, ``json_schema``,
constrained); ``tools`` with ``tool_choice`` ``none``/``auto``/``required``/named (forced calls
are constrained to the function's parameter schema; with tools, a stream sends the answer once it
is complete, since calls are only known then); ``logprobs``/``top_logprobs``; ``seed``, ``stop``,
vLLM's ``top_k`` and ``repetition_penalty``. Refused by name: ``n`` > 1 and a non-zero
``frequency_penalty``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.deps import caller, service_of
from vlserve.api.errors import openai_error_body, request_id_of, to_vlserve_error
from vlserve.api.openai_protocol import ChatMessage, ChatRequest, ContentPart
from vlserve.api.sse import event
from vlserve.errors import RequestError
from vlserve.runtime.protocol import TextDelta, TokenLogprob, ToolCall
from vlserve.schemas import InferOptions, VideoInput
from vlserve.service.call import Call
from vlserve.service.inference import InferenceService, Outcome
from vlserve.tasks.chat import Chat, ChatAnswer, ChatPart, ChatTurn, MediaSlot

router = APIRouter(prefix="/v1")


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
    call = to_call(body)
    if not body.stream:
        outcome = await service.infer(call, request_id=request_id, key_id=key_id)
        return JSONResponse(_completion(body, outcome))
    run = await service.start(call, request_id=request_id, key_id=key_id)
    events = service.events(run)
    try:
        first = await anext(events)  # errors up to here are ordinary JSON error responses
    except BaseException:
        await events.aclose()
        raise
    return StreamingResponse(_chunks(body, request_id, first, events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- request translation ----------------------------------------------------------------------
def to_call(body: ChatRequest) -> Call:
    """The chat request as a :class:`Call`; refuses what we do not implement, naming the field."""
    if body.n != 1:
        raise RequestError("n must be 1: this server returns one choice per request (send n requests instead)",
                           param="n")
    if body.frequency_penalty:
        raise RequestError("frequency_penalty is not supported; use presence_penalty or repetition_penalty",
                           param="frequency_penalty")
    images: list[str] = []
    videos: list[VideoInput] = []
    turns = [_turn(m, images, videos) for m in body.messages]
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice
    forced: list[str] | None = None
    if choice == "none":
        tools = []
    elif choice == "required":
        forced = [t["function"]["name"] for t in tools]
        if not forced:
            raise RequestError("tool_choice 'required' needs at least one tool", param="tool_choice")
    elif choice is not None and not isinstance(choice, str):
        forced = [choice.function.name]
        if choice.function.name not in {t["function"]["name"] for t in tools}:
            raise RequestError(f"tool_choice names {choice.function.name!r}, which is not among the tools",
                               param="tool_choice")
    task = Chat(turns, response_schema=_response_schema(body), tools=tools, forced_tools=forced)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    options = InferOptions(
        max_tokens=body.max_completion_tokens or body.max_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, repetition_penalty=body.repetition_penalty, presence_penalty=body.presence_penalty,
        seed=body.seed, stop=stop,
    )
    texts = [p for turn in turns for p in turn.parts if isinstance(p, str)]
    texts += [json.dumps(call.arguments) for turn in turns for call in turn.tool_calls]
    texts += [json.dumps(t) for t in tools]
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return Call(task=task, images=images, videos=videos, other_texts=texts, options=options, logprobs=logprobs)


def _turn(message: ChatMessage, images: list[str], videos: list[VideoInput]) -> ChatTurn:
    role = "system" if message.role == "developer" else message.role
    parts: list[ChatPart] = []
    if isinstance(message.content, str):
        parts.append(message.content)
    for part in message.content if isinstance(message.content, list) else []:
        parts.append(_part(part, images, videos))
    calls = []
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise RequestError(f"the arguments of tool call {call.function.name!r} must be a JSON object",
                               param="messages")
        calls.append(ToolCall(call.function.name, arguments, id=call.id))
    return ChatTurn(role, parts, calls)


def _part(part: ContentPart, images: list[str], videos: list[VideoInput]) -> ChatPart:
    if part.type == "text":
        return part.text or ""
    ref = part.image_url if part.type == "image_url" else part.video_url
    if ref is None:
        raise RequestError(f"a {part.type} part needs {{'{part.type}': {{'url': ...}}}}", param="messages")
    if part.type == "image_url":
        images.append(ref.url)
        return MediaSlot("image", len(images) - 1)
    videos.append(VideoInput(url=ref.url))
    return MediaSlot("video", len(videos) - 1)


def _response_schema(body: ChatRequest) -> dict[str, Any] | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None:
        raise RequestError("response_format json_schema needs a 'json_schema' object with a 'schema'",
                           param="response_format")
    return fmt.json_schema.schema_ or {"type": "object"}


# -- answer translation -----------------------------------------------------------------------
def _completion(body: ChatRequest, outcome: Outcome) -> dict[str, Any]:
    answer: ChatAnswer = outcome.answer
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["tool_calls"] = [_tool_call(c) for c in answer.tool_calls]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": _finish(outcome),
                              "logprobs": _logprobs(outcome.result.logprobs) if body.logprobs else None}
    return {"id": _completion_id(outcome.request_id), "object": "chat.completion", "created": int(time.time()),
            "model": outcome.metadata.model, "choices": [choice], "usage": _usage(outcome),
            "system_fingerprint": None}


def _finish(outcome: Outcome) -> str:
    if outcome.answer.tool_calls:
        return "tool_calls"
    return "length" if outcome.result.finish_reason == "length" else "stop"


def _tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
    if index is not None:
        out["index"] = index
    return out


def _logprobs(tokens: list[TokenLogprob] | None) -> dict[str, Any] | None:
    if tokens is None:
        return None

    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(a, b) for a, b in t.top]}
                        for t in tokens]}


def _usage(outcome: Outcome) -> dict[str, int]:
    m = outcome.metadata
    return {"prompt_tokens": m.input_tokens, "completion_tokens": m.output_tokens,
            "total_tokens": m.input_tokens + m.output_tokens}


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req_")


async def _chunks(body: ChatRequest, request_id: str, first: TextDelta | Outcome,
                  events: AsyncGenerator[TextDelta | Outcome, None]) -> AsyncIterator[bytes]:
    base = {"id": _completion_id(request_id), "object": "chat.completion.chunk", "created": int(time.time())}
    model = ""
    held = bool(body.tools) and body.tool_choice != "none"  # calls are only known once the answer is whole

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: dict[str, Any] | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return event(None, {**base, "model": model, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    try:
        current: TextDelta | Outcome | None = first
        while current is not None:
            if isinstance(current, TextDelta) and not held:
                logprobs = _logprobs(current.logprobs) if body.logprobs else None
                yield chunk({"content": current.text}, logprobs=logprobs)
            elif isinstance(current, Outcome):
                model = current.metadata.model
                answer: ChatAnswer = current.answer
                if held and answer.content:
                    logprobs = _logprobs(current.result.logprobs) if body.logprobs else None
                    yield chunk({"content": answer.content}, logprobs=logprobs)
                if answer.tool_calls:
                    yield chunk({"tool_calls": [_tool_call(c, i) for i, c in enumerate(answer.tool_calls)]})
                yield chunk({}, _finish(current))
                if body.stream_options and body.stream_options.include_usage:
                    yield event(None, {**base, "model": model, "choices": [], "usage": _usage(current)})
            current = await anext(events, None)
    except Exception as exc:  # after the first byte, errors travel in the stream
        yield event(None, openai_error_body(to_vlserve_error(exc), request_id))
    finally:
        await events.aclose()  # a client that went away cancels generation
    yield event(None, "[DONE]")
