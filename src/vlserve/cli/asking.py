"""``vlserve ask`` on the embedded engine."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import IO, Any, TypedDict

from vlserve.config import Settings
from vlserve.errors import FetchError
from vlserve.media import VisionSettings
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

MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024


def read_source(source: str) -> bytes | str:
    """A local path is returned as is; an http(s) URL is downloaded (the CLI user's own network)."""
    if not source.startswith(("http://", "https://")):
        return source
    import httpx

    try:
        with httpx.stream("GET", source, follow_redirects=True, timeout=30.0) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise FetchError(f"{source} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as err:
        raise FetchError(f"could not fetch {source}: {err}") from err


def build_request(
    question: str, images: list[str], videos: list[str], options: dict[str, Any], fps: float | None,
    vision: VisionSettings,
) -> GenerationRequest:
    """The engine request; images are loaded with ``vision``, the server's settings for this model."""
    from vlserve.media import load_image

    parts: list[Part] = []
    for source in images:
        parts.append(ImagePart(load_image(read_source(source), vision)))
    for source in videos:
        parts.append(VideoPart(read_source(source), fps=fps))
    parts.append(TextPart(question))
    return GenerationRequest([Message("user", parts)], SamplingParams(**options))


def result_dict(result: GenerationResult, answer: Any, processing_ms: float) -> dict[str, Any]:
    """The ``--json`` shape, the same as ``vlserve ask --server``'s (the task API's result)."""
    from vlserve.schemas import Metadata

    metadata = Metadata(
        processing_time_ms=round(processing_ms, 1), activated_experts=result.activated_experts,
        input_tokens=result.usage.input_tokens, output_tokens=result.usage.output_tokens,
        image_tokens=result.usage.image_tokens, video_tokens=result.usage.video_tokens, model=result.model,
        finish_reason=result.finish_reason, warnings=result.warnings,
        ttft_ms=round(result.timings.get("ttft_ms", 0.0), 1),
    )
    return {"request_id": None, "answer": answer, "confidence": result.confidence,
            "metadata": metadata.model_dump(), "code": 0, "msg": "success"}


def run_ask(
    question: str,
    *,
    model: str,
    images: list[str],
    videos: list[str],
    options: dict[str, Any],
    fps: float | None,
    json_output: bool,
    device: str,
    dtype: Any,
    out: IO[str],
    settings: Settings | None = None,
) -> GenerationResult:
    """Load ``model`` and answer; media is prepared with ``settings.limits`` exactly as the server does."""
    from vlserve.runtime.loading import resolve_checkpoint
    from vlserve.runtime.local import LocalEngine

    settings = settings or Settings.load()
    ckpt = resolve_checkpoint(model)
    vision = VisionSettings.from_limits(settings.limits, checkpoint=ckpt.path)
    engine = LocalEngine(ckpt.path, device=device, dtype=dtype, vision=vision, name=model)
    asked = time.perf_counter()
    request = build_request(question, images, videos, options, fps, vision)
    result: GenerationResult | None = None
    for event in engine.iter_stream(request):
        if isinstance(event, TextDelta):
            if not json_output:
                out.write(event.text)
                out.flush()
        else:
            result = event
    assert result is not None
    if json_output:
        answer: Any = json.loads(result.text) if options.get("json_schema") else result.text
        payload = result_dict(result, answer, (time.perf_counter() - asked) * 1000)
        out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    else:
        out.write("\n")
    return result


class _Waits(TypedDict, total=False):
    """The SDK client's timeouts ``run_ask_server`` overrides (a TypedDict: checked per keyword)."""

    timeout: float
    video_timeout: float


def run_ask_server(url: str, api_key: str | None, question: str, *, task: str, images: list[str],
                   videos: list[str], options: dict[str, Any], json_output: bool, out: IO[str],
                   timeout: float | None = None) -> None:
    """``vlserve ask --server URL``: the same question through the SDK and the task API
    (``timeout``: seconds to wait for the answer; None: the SDK's defaults)."""
    from vlserve.client import Client, Final, Token

    waits: _Waits = {} if timeout is None else {"timeout": timeout, "video_timeout": timeout}
    with Client(url, api_key=api_key, **waits) as client:
        if json_output:  # the same shape as the local mode's (result_dict)
            answer = client.ask(images, question, task=task, videos=videos, **options)
            out.write(json.dumps(dataclasses.asdict(answer), ensure_ascii=False, indent=2) + "\n")
            return
        for item in client.ask(images, question, task=task, stream=True, videos=videos, **options):
            if isinstance(item, Token):
                out.write(item.token)
                out.flush()
            elif isinstance(item, Final) and not isinstance(item.answer, str):
                out.write(json.dumps(item.answer, ensure_ascii=False))
        out.write("\n")
