"""Upstream servers for the remote-engine tests, all on loopback.

- :func:`vlserve_upstream`: ``vlserve serve`` with the tiny model, as its own process (a real
  OpenAI-compatible upstream that can be killed);
- :func:`gateway`: a vlserve app whose engines are pools of upstreams, served in a thread;
- :class:`FakeVllm`: a **stand-in for vLLM** (the external engine we cannot run here): a small
  HTTP server speaking vLLM's chat-completions protocol, recording what it was sent, answering
  slowly when told to, and exposing ``vllm:num_requests_waiting`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from vlserve.api.app import create_app
from vlserve.config import Settings
from vlserve.testing.server import iter_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream_settings(model: Path, tmp: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": str(model), "model_name": "tiny-up", "data_dir": str(tmp), "expose_ui": False,
        "jobs": {"workers": 0},
    }
    data.update(overrides)
    return data


@contextmanager
def vlserve_upstream(model: Path, tmp: Path, **overrides: Any) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``vlserve serve`` on 127.0.0.1 with the tiny model, ready; killed (SIGKILL) on exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "upstream.json"
    config.write_text(json.dumps(upstream_settings(model, tmp, **overrides)))
    port = free_port()
    log = (tmp / "upstream.log").open("wb")
    env = {**os.environ, "VLSERVE_DATA_DIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "vlserve.cli.main", "serve", "--config", str(config),
                             "--port", str(port), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "upstream.log").read_text())
            try:
                if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("upstream did not become ready")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


run_in_thread = iter_server  # a real uvicorn on loopback, in a thread

def gateway_settings(tmp: Path, upstreams: list[str], **remote: Any) -> Settings:
    return Settings.model_validate({
        "remote": {"upstreams": upstreams, "dialect": "vlserve", "probe_interval": 0.2, **remote},
        "model_name": "gw", "data_dir": str(tmp), "expose_ui": False, "jobs": {"workers": 0},
    })


@contextmanager
def gateway(settings: Settings) -> Iterator[str]:
    """A gateway (vlserve with pools of upstreams) served in a thread, ready."""
    runner = run_in_thread(create_app(settings))
    url = next(runner)
    try:
        deadline = time.monotonic() + 30
        while httpx.get(url + "/readyz", timeout=5, trust_env=False).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        next(runner, None)


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples on ``url``'s ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


class FakeVllm:
    """A stand-in for a vLLM server (external boundary): records request bodies; answers each with
    ``words`` streamed ``delay`` seconds apart (or, without ``stream``, as one JSON body after as
    long); reports ``waiting`` on ``/metrics``."""

    def __init__(self, *, words: tuple[str, ...] = ("Hello", " there"), delay: float = 0.0,
                 waiting: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []
        self.words, self.delay, self.waiting = words, delay, waiting
        self.in_flight = 0
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models),
            Route("/health", self._health),
            Route("/metrics", self._metrics),
        ])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        self.authorization.append(request.headers.get("authorization"))
        last = body.get("messages", [{}])[-1].get("content")
        if last == "please fail":
            return JSONResponse({"object": "error", "message": "bad thing", "type": "BadRequestError",
                                 "code": 400}, status_code=400)
        if last == "please crash":
            return PlainTextResponse("Traceback (most recent call last): secret internals", status_code=500)
        if last == "please wait":
            return JSONResponse({"error": {"message": "busy"}}, status_code=429, headers={"Retry-After": "7"})

        usage = {"prompt_tokens": 7, "completion_tokens": len(self.words), "total_tokens": 7 + len(self.words)}
        if body.get("stream") is not True:  # vLLM's whole answer: one JSON body
            self.in_flight += 1
            try:
                await asyncio.sleep(self.delay * len(self.words))
            finally:
                self.in_flight -= 1
            logprobs = [{"token": word, "logprob": -0.5, "top_logprobs": []} for word in self.words]
            return JSONResponse({"object": "chat.completion", "usage": usage, "choices": [{
                "index": 0, "message": {"role": "assistant", "content": "".join(self.words)},
                "finish_reason": "stop", "logprobs": {"content": logprobs}}]})

        async def chunks() -> AsyncIterator[bytes]:
            self.in_flight += 1
            try:
                for word in self.words:
                    await asyncio.sleep(self.delay)
                    chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None,
                                          "logprobs": {"content": [{"token": word, "logprob": -0.5,
                                                                    "top_logprobs": []}]}}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(end)}\n\n".encode()
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
                yield b"data: [DONE]\n\n"
            finally:
                self.in_flight -= 1

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "Qwen/Qwen3-VL-8B-Instruct", "object": "model"}]})

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _metrics(self, request: Request) -> Response:
        return PlainTextResponse(
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="Qwen/Qwen3-VL-8B-Instruct"}} {self.waiting}.0\n')

    @contextmanager
    def serve(self) -> Iterator[str]:
        runner = run_in_thread(self.app)
        try:
            yield next(runner)
        finally:
            next(runner, None)


def tiny_mp4(seconds: float = 2.0, fps: int = 4, size: int = 64) -> bytes:
    """A small real H.264 MP4 (moving gradient), for the video path."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            frame = np.stack([np.add.outer(ramp, ramp * 0 + i * 20) % 256] * 3, axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
