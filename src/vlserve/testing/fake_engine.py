"""``FakeEngine``: the engine protocol without a model, deterministic and instant (a test double).

Service, lane, job and task tests that are about admission, queueing, errors or wire formats run
against it in milliseconds; what the model itself does stays tested on the real tiny checkpoints.

>>> engine = FakeEngine("fake", reply="a red square", token_delay=0.01)
>>> engine.hold()            # requests wait at their first token until release()
>>> engine.fail_with(EngineError("boom"))  # the next requests fail like a broken engine

Replies: ``reply`` (a string, or a function of the request). With a ``json_schema`` the reply is
the smallest instance of the schema (:func:`schema_instance`), so structured tasks parse it. Text
is streamed one word per token; ``max_tokens`` cuts it with ``finish_reason="length"``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from vlserve.errors import EngineError, VlserveError
from vlserve.runtime.protocol import (
    EngineHealth,
    GenerationRequest,
    GenerationResult,
    ImagePart,
    StreamEvent,
    TextDelta,
    TextPart,
    TokenLogprob,
    Usage,
    VideoPart,
)

__all__ = ["FakeEngine", "schema_instance"]

IMAGE_TOKENS = 16  # what every image "costs", so that usage is deterministic
VIDEO_TOKENS = 64


class FakeEngine:
    """A deterministic stand-in for :class:`~vlserve.runtime.protocol.Engine` (test double).

    ``token_delay``/``first_token_delay`` (seconds) pace the stream; ``hold()`` parks requests
    until ``release()``; ``fail_with(err, after_tokens=n)`` makes requests fail (before any token,
    or after ``n``). ``requests`` records every request, ``active``/``peak`` count concurrent ones.
    """

    def __init__(self, model_name: str = "fake", *, reply: str | Callable[[GenerationRequest], str] | None = None,
                 token_delay: float = 0.0, first_token_delay: float = 0.0) -> None:
        self.model_name = model_name
        self.reply = reply
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self.requests: list[GenerationRequest] = []
        self.active = 0
        self.peak = 0
        self.closed = False
        self._open = threading.Event()  # cleared by hold(): requests wait (thread-safe: servers run in threads)
        self._open.set()
        self._failure: VlserveError | None = None
        self._fail_after = 0
        self._lock = threading.Lock()

    # -- controls -------------------------------------------------------------------------------
    def hold(self) -> None:
        """Park every request (new and running) before its next token until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def fail_with(self, error: VlserveError | None, *, after_tokens: int = 0) -> None:
        """Fail requests from now on with ``error`` after ``after_tokens`` tokens (``None``: stop failing)."""
        self._failure, self._fail_after = error, after_tokens

    # -- the engine protocol --------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result: GenerationResult | None = None
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        if self.closed:
            raise EngineError(f"engine {self.model_name} is closed")
        self.requests.append(request)
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        started = time.perf_counter()
        try:
            pieces, finish = self._pieces(request)
            logprobs = _logprobs(pieces, request.params.logprobs)
            failure, fail_after = self._failure, self._fail_after
            await self._pause(self.first_token_delay)
            first = time.perf_counter()
            for index, piece in enumerate(pieces):
                if failure is not None and index >= fail_after:
                    raise failure
                if index:
                    await self._pause(self.token_delay)
                yield TextDelta(piece, index, logprobs=[logprobs[index]] if logprobs else None)
            if failure is not None and len(pieces) <= fail_after:
                raise failure
            done = time.perf_counter()
            yield GenerationResult(
                text="".join(pieces), token_ids=list(range(len(pieces))), finish_reason=finish,
                usage=self._usage(request, len(pieces)), confidence=1.0, model=self.model_name,
                timings={"ttft_ms": (first - started) * 1000, "generate_ms": (done - started) * 1000},
                logprobs=logprobs,
            )
        finally:
            with self._lock:
                self.active -= 1

    async def health(self) -> EngineHealth:
        return EngineHealth(ready=not self.closed, model=self.model_name, detail={"fake": True})

    def close(self) -> None:
        self.closed = True
        self._open.set()

    # -- internals ------------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
        while not self._open.is_set():
            await asyncio.sleep(0.002)
        if self.closed:
            raise EngineError(f"engine {self.model_name} is closed")

    def _pieces(self, request: GenerationRequest) -> tuple[list[str], Any]:
        params = request.params
        if params.json_schema is not None:
            text = json.dumps(schema_instance(params.json_schema), ensure_ascii=False)
        elif callable(self.reply):
            text = self.reply(request)
        elif self.reply is not None:
            text = self.reply
        else:
            text = f"fake answer to: {_question(request)}"
        pieces = re.findall(r"\s*\S+", text) or [text]
        if len(pieces) > params.max_tokens:
            return pieces[: params.max_tokens], "length"
        return pieces, "stop"

    @staticmethod
    def _usage(request: GenerationRequest, output_tokens: int) -> Usage:
        parts = [p for m in request.messages for p in m.parts]
        images = sum(isinstance(p, ImagePart) for p in parts) * IMAGE_TOKENS
        videos = sum(isinstance(p, VideoPart) for p in parts) * VIDEO_TOKENS
        words = sum(len(p.text.split()) for p in parts if isinstance(p, TextPart))
        return Usage(input_tokens=words + images + videos, output_tokens=output_tokens, image_tokens=images,
                     video_tokens=videos)


def _logprobs(pieces: list[str], top: int | None) -> list[TokenLogprob] | None:
    """Each token certain (log-probability 0), then ``top - 1`` made-up alternatives far below it."""
    if top is None:
        return None
    return [TokenLogprob(piece, 0.0, [(piece, 0.0), *((f"<alt{j}>", -10.0 - j) for j in range(1, top))][:top])
            for piece in pieces]


def _question(request: GenerationRequest) -> str:
    texts = [p.text for m in request.messages if m.role == "user" for p in m.parts if isinstance(p, TextPart)]
    return texts[-1] if texts else ""


def schema_instance(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The smallest value valid under ``schema`` (the JSON Schema subset our tasks use: types,
    ``enum``/``const``, ``anyOf``/``oneOf``, ``$ref`` to ``$defs``, ``minItems``/``minLength``,
    ``minimum``, required properties)."""
    root = root or schema
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/")
        target: Any = root
        for key in ref.split("/"):
            target = target[key]
        return schema_instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(props.get(name, {}), root) for name in schema.get("required", [])}
    if kind == "array":
        return [schema_instance(schema.get("items", {}), root) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(0, low) + (1 if "exclusiveMinimum" in schema else 0)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None
