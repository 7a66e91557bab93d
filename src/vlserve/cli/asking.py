"""``vlserve ask`` on the embedded engine."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import IO, Any

from vlserve.errors import FetchError
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
    question: str, images: list[str], videos: list[str], options: dict[str, Any], fps: float | None
) -> GenerationRequest:
    from vlserve.media import VisionSettings, load_image

    parts: list[Part] = []
    settings = VisionSettings()
    for source in images:
        parts.append(ImagePart(load_image(read_source(source), settings)))
    for source in videos:
        parts.append(VideoPart(read_source(source), fps=fps))
    parts.append(TextPart(question))
    return GenerationRequest([Message("user", parts)], SamplingParams(**options))


def result_dict(result: GenerationResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


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
) -> GenerationResult:
    from vlserve.runtime.local import LocalEngine

    loaded = time.perf_counter()
    engine = LocalEngine(model, device=device, dtype=dtype)
    load_ms = (time.perf_counter() - loaded) * 1000
    request = build_request(question, images, videos, options, fps)
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
        payload = result_dict(result)
        payload["timings"]["load_ms"] = load_ms
        out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    else:
        out.write("\n")
    return result


def run_ask_server(url: str, api_key: str | None, question: str, *, task: str, images: list[str],
                   videos: list[str], options: dict[str, Any], json_output: bool, out: IO[str]) -> None:
    """``vlserve ask --server URL``: the same question through the SDK and the task API."""
    from vlserve.client import Client, Final, Token

    with Client(url, api_key=api_key) as client:
        if json_output:
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
