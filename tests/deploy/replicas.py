"""Helpers of the several-gateways tests: `vlserve serve` gateway processes that can be SIGKILLed,
and a counting stand-in for the upstream engine.

:class:`CountingUpstream` is a **stand-in for vLLM** (the external engine, which cannot run here):
it speaks vLLM's streamed chat-completions protocol, answers slowly on purpose, and counts for each
marker word found in a request how many answers started and how many were sent to the end (an
answer whose client went away midway is not finished). That is how the tests count executions.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.jobs.helpers import free_port
from vlserve.testing.server import serving

MARKER = re.compile(r"marker-\d+")


class CountingUpstream:
    """Answers every chat request with ``words`` streamed ``delay`` seconds apart (vLLM's SSE shape),
    or without ``stream`` as one JSON answer after as long (abandoned when the caller disconnects,
    as vLLM aborts such a request)."""

    def __init__(self, *, words: int = 5, delay: float = 0.3) -> None:
        self.words, self.delay = words, delay
        self.started: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.in_flight = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                     Route("/v1/models", self._models), Route("/health", self._health),
                                     Route("/metrics", self._metrics)])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        found = MARKER.search(json.dumps(body))
        marker = found.group(0) if found else "unmarked"
        self.started[marker] += 1
        usage = {"prompt_tokens": 7, "completion_tokens": self.words, "total_tokens": 7 + self.words}
        if body.get("stream") is not True:  # a whole answer, as vLLM sends one; abandoned if the caller leaves
            self.in_flight += 1
            try:
                for _ in range(self.words):
                    await asyncio.sleep(self.delay)
                    if await request.is_disconnected():
                        return Response(status_code=499)
            finally:
                self.in_flight -= 1
            self.finished[marker] += 1
            text = "".join(f" w{i}" for i in range(self.words))
            return JSONResponse({"object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

        async def chunks() -> AsyncIterator[bytes]:
            self.in_flight += 1
            try:
                for i in range(self.words):
                    await asyncio.sleep(self.delay)
                    delta = {"choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
                    yield f"data: {json.dumps(delta)}\n\n".encode()
                end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(end)}\n\n".encode()
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
                yield b"data: [DONE]\n\n"
                self.finished[marker] += 1
            finally:
                self.in_flight -= 1

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "stand-in", "object": "model"}]})

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _metrics(self, request: Request) -> Response:
        return PlainTextResponse("vllm:num_requests_waiting 0.0\n")

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.app) as url:
            yield url


def gateway_config(tmp: Path, name: str, *, upstream: str, redis_url: str, **sections: dict[str, Any]) -> Path:
    """A gateway's settings file: a pool of ``upstream``, jobs in Redis, artifacts in ``tmp/shared``."""
    data: dict[str, Any] = {
        "host": "127.0.0.1", "model_name": "gw", "data_dir": str(tmp / name), "expose_ui": False,
        "remote": {"upstreams": [upstream], "upstream_model": "stand-in", "dialect": "vllm", "probe_interval": 0.2,
                   "connect_timeout": 1.0, "max_queue": 0, "confidence": False},
        "jobs": {"backend": "redis", "redis_url": redis_url, "workers": 2, "lease_seconds": 2.0},
        "recon3d": {"artifacts_dir": str(tmp / "shared" / "artifacts")},
        "retention": {"purge_interval": 0},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    path = tmp / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


class Gateway:
    """One `vlserve serve` process (no torch needed: its engine is a pool of remote upstreams)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
        with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vlserve.cli.main", "serve", "--config", str(config), "--port", str(self.port),
                 "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not become ready:\n{self.log.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease given back, connections dropped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def gateways(configs: list[Path], tmp: Path) -> Iterator[list[Gateway]]:
    """Start one gateway per config (at once), wait until all are ready, stop them afterwards."""
    started = [Gateway(config, tmp / f"{config.stem}.log") for config in configs]
    try:
        for gateway in started:
            gateway.wait_ready()
        yield started
    finally:
        for gateway in started:
            gateway.stop()


def wait_for(check: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
