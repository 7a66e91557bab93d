"""EnginePool over real upstreams on loopback: routing, retry before the first token, ejection and
re-admission, a killed upstream mid-stream, and admission that refuses with 2001 when upstreams
are slow or their own queues are long (FakeVllm stands in for vLLM where its metrics matter)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydantic
import pytest
import uvicorn

from tests.runtime.upstreams import FakeVllm, free_port, gateway, gateway_settings, vlserve_upstream
from vlserve import errors
from vlserve.config import ModelSettings, Settings, Upstream
from vlserve.media import VisionSettings
from vlserve.runtime.pool import EnginePool
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, Message, SamplingParams


def pool(urls: list[str], **options: object) -> EnginePool:
    return EnginePool(Upstream(upstreams=urls, **options), VisionSettings(), name="p")  # type: ignore[arg-type]


def ask(text: str = "hi", max_tokens: int = 4) -> GenerationRequest:
    return GenerationRequest([Message("user", text)], SamplingParams(max_tokens=max_tokens))


def test_config_is_either_a_checkpoint_or_upstreams() -> None:
    assert ModelSettings(upstreams=["http://127.0.0.1:8001/v1/"]).upstreams == ["http://127.0.0.1:8001"]
    for bad in ({}, {"model": "tiny", "upstreams": ["http://127.0.0.1:8001"]}, {"upstreams": ["ftp://x"]}):
        with pytest.raises(pydantic.ValidationError):
            ModelSettings(**bad)  # type: ignore[arg-type]
    settings = Settings.model_validate({"scheduling": {"models": {"big": {"upstreams": ["http://127.0.0.1:1"],
                                                                          "max_queue": 4}}}})
    assert settings.scheduling.models["big"].max_queue == 4


def test_least_outstanding_routing_spreads_requests() -> None:
    a, b = FakeVllm(delay=0.3), FakeVllm(delay=0.3)
    with a.serve() as ua, b.serve() as ub:
        async def run() -> list[GenerationResult]:
            p = pool([ua, ub], dialect="vllm")
            try:
                return await asyncio.gather(*(p.generate(ask()) for _ in range(4)))
            finally:
                p.close()

        results = asyncio.run(run())
    assert all(r.text == "Hello there" for r in results)
    assert len(a.bodies) == len(b.bodies) == 2


def test_refused_connection_is_retried_elsewhere_then_readmitted_by_a_probe() -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{port}"
    fake = FakeVllm()
    with fake.serve() as live:
        async def run() -> None:
            p = pool([dead, live], dialect="vllm")
            try:
                result = await p.generate(ask())  # the dead replica is first in line: retried on the live one
                assert result.text == "Hello there"
                assert [r.healthy for r in p.replicas] == [False, True]  # a refused connection ejects at once
                revived = FakeVllm(words=("back",))
                server = uvicorn.Server(uvicorn.Config(revived.app, host="127.0.0.1", port=port, log_level="warning"))
                serving = asyncio.create_task(server.serve())
                while not server.started:
                    await asyncio.sleep(0.02)
                await p.probe()
                assert [r.healthy for r in p.replicas] == [True, True]
                server.should_exit = True
                await serving
            finally:
                p.close()

        asyncio.run(run())


def test_slow_upstream_at_its_limit_refuses_with_2001() -> None:
    fake = FakeVllm(words=("a",) * 20, delay=0.1)
    with fake.serve() as url:
        async def run() -> None:
            p = pool([url], dialect="vllm", max_concurrency=1, max_queue=0)
            try:
                slow = asyncio.create_task(p.generate(ask()))
                while fake.in_flight == 0:
                    await asyncio.sleep(0.01)
                started = time.monotonic()
                with pytest.raises(errors.OverloadedError):
                    await p.generate(ask())
                assert time.monotonic() - started < 1  # refused at once, not queued behind the slow one
                assert (await slow).text == "a" * 20
            finally:
                p.close()

        asyncio.run(run())


def test_long_upstream_queue_refuses_with_2001_through_the_gateway(tmp_path: Path) -> None:
    fake = FakeVllm(waiting=40)  # vllm:num_requests_waiting 40, above max_queue 16
    with fake.serve() as url:
        settings = gateway_settings(tmp_path, [url], dialect="vllm", max_queue=16)
        with gateway(settings) as gw:
            chat = {"model": "gw", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
            deadline = time.monotonic() + 10
            while True:  # the first probe reads the upstream's queue
                response = httpx.post(gw + "/v1/chat/completions", json=chat, timeout=30)
                if response.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert response.status_code == 503 and response.json()["error"]["code"] == 2001, response.text
            assert "Retry-After" in response.headers
            fake.waiting = 0
            time.sleep(0.6)  # a probe later the replica takes requests again
            answer = httpx.post(gw + "/v1/chat/completions", json=chat, timeout=30)
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "Hello there"


@pytest.fixture()
def victim(tiny_dir: Path, tmp_path: Path) -> Iterator[tuple[str, object]]:
    with vlserve_upstream(tiny_dir, tmp_path / "victim") as (url, proc):
        yield url, proc


@pytest.mark.slow  # starts a second upstream process (about 40 s on a small shared machine)
def test_upstream_killed_mid_stream(victim: tuple[str, object], upstream: str, tmp_path: Path) -> None:
    victim_url, proc = victim
    settings = gateway_settings(tmp_path / "gw", [victim_url, upstream], eject_after=1, probe_interval=60)
    with gateway(settings) as gw:
        body = {"model": "gw", "stream": True, "max_tokens": 2000, "temperature": 1.0, "seed": 3,
                "messages": [{"role": "user", "content": "Talk"}]}
        events = []
        with httpx.stream("POST", gw + "/v1/chat/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data: ") and json.loads(line[6:]).get("choices", [{}])[0].get("delta", {}).get(
                        "content"):
                    proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined] - the victim was first in line
                    break
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        error = next(e["error"] for e in events if "error" in e)
        assert error["code"] == 5005 and "broke off" in error["message"]
        ready = httpx.get(gw + "/readyz", timeout=10).json()
        assert ready["healthy_replicas"] == 1
        after = httpx.post(gw + "/v1/chat/completions", json={"model": "gw", "max_tokens": 3,
                                                             "messages": [{"role": "user", "content": "hi"}]},
                           timeout=60)
        assert after.status_code == 200, after.text  # answered by the healthy replica
