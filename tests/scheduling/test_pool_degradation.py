"""Degradation to a lighter pool (docs/scheduling.md, docs/remote.md): a lane whose main engine is a
pool of remote replicas degrades to its fallback pool when that pool refuses work (every replica
unreachable, every replica's own queue too deep), exactly as a full lane does: code 2001 with the
lighter model's answer and ``degraded: true``. Without a fallback the pool's own error stays.

Real gateways on loopback (uvicorn in a thread); the upstreams are stand-ins for vLLM
(:class:`FakeVllm`, the external engine we cannot run here) that record what they were sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.runtime.upstreams import FakeVllm, free_port, metric, run_in_thread
from vlserve.api.app import create_app
from vlserve.config import Settings

QUESTION = {"task": "vqa", "text": "What is shown?", "options": {"max_tokens": 8},
            "images": ["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
                       "hQGAhKmMIQAAAABJRU5ErkJggg=="]}


def settings(tmp: Path, main: list[str], light: str | None, **main_options: Any) -> Settings:
    pool = {"dialect": "vllm", "probe_interval": 0.2, "connect_timeout": 1.0, "confidence": False}
    data: dict[str, Any] = {
        "remote": {"upstreams": main, "upstream_model": "big", **pool, **main_options},
        "model_name": "big", "data_dir": str(tmp), "expose_ui": False, "jobs": {"workers": 0},
    }
    if light is not None:
        data["scheduling"] = {"models": {"light": {"upstreams": [light], "upstream_model": "small", **pool}},
                              "lanes": {"interactive": {"fallback": "light"}}}
    return Settings.model_validate(data)


@contextmanager
def gateway(settings: Settings) -> Iterator[str]:
    """A gateway served in a thread, once its service is up (ready or not: its main pool may be down)."""
    runner = run_in_thread(create_app(settings))
    url = next(runner)
    try:
        deadline = time.monotonic() + 30
        while "lanes" not in httpx.get(url + "/readyz", timeout=5).json():
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        yield url
    finally:
        next(runner, None)


def ask(url: str) -> httpx.Response:
    return httpx.post(url + "/infer", json=QUESTION, timeout=30)


def assert_degraded(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 2001, body
    assert body["result"]["metadata"]["degraded"] is True
    assert body["result"]["metadata"]["model"] == "light"
    assert body["result"]["answer"] == "Hello there"


def test_unreachable_main_pool_degrades_to_the_light_pool(tmp_path: Path) -> None:
    light = FakeVllm()
    with light.serve() as light_url, gateway(settings(tmp_path, [f"http://127.0.0.1:{free_port()}"],
                                                      light_url)) as url:
        # The first request finds the replica refusing connections (5007 before any token): it is
        # handed to the fallback; the next ones see the replica ejected and degrade at admission.
        for _ in range(3):
            assert_degraded(ask(url))
        assert len(light.bodies) == 3 and all(b["model"] == "small" for b in light.bodies)
        assert metric(url, "vlserve_degraded_total") == 3
        ready = httpx.get(url + "/readyz")
        assert ready.json()["lanes"]["interactive"]["degraded"] == 0  # every place given back
        # Still in the load balancer's rotation: it answers, degraded, and says so.
        assert ready.status_code == 200 and ready.json()["fallback_only"] is True, ready.text
        assert ready.json()["healthy_replicas"] == 0


def test_main_pool_with_deep_upstream_queues_degrades(tmp_path: Path) -> None:
    main, light = FakeVllm(waiting=50), FakeVllm()
    with main.serve() as main_url, light.serve() as light_url, \
            gateway(settings(tmp_path, [main_url], light_url, max_queue=4)) as url:
        deadline = time.monotonic() + 10  # the first queue-depth probe (every 0.2 s) has to land
        while not (answer := ask(url)).json()["result"]["metadata"]["degraded"]:
            assert time.monotonic() < deadline, "the pool never saw the upstream's queue"
            main.bodies.clear()
        assert_degraded(answer)
        main.waiting = 0  # its queue drained: the main pool answers again, after the next probe
        deadline = time.monotonic() + 10
        while (answer := ask(url)).json()["result"]["metadata"]["degraded"]:
            assert time.monotonic() < deadline, "the main pool never came back"
        assert answer.json()["code"] == 0 and answer.json()["result"]["metadata"]["model"] == "big"
        assert len(main.bodies) == 1


def test_without_a_fallback_the_pools_error_stays(tmp_path: Path) -> None:
    """The control: the same failures without a lighter pool answer 5007 and 2001, not degraded."""
    with gateway(settings(tmp_path, [f"http://127.0.0.1:{free_port()}"], None)) as url:
        answer = ask(url)
        assert answer.status_code == 503 and answer.json()["code"] == 5007, answer.text
        time.sleep(0.5)  # probed: out of the rotation, nothing else can answer
        assert httpx.get(url + "/readyz").status_code == 503
    main = FakeVllm(waiting=50)
    with main.serve() as main_url, gateway(settings(tmp_path, [main_url], None, max_queue=4)) as url:
        deadline = time.monotonic() + 10
        while (answer := ask(url)).status_code == 200:
            assert time.monotonic() < deadline, "the pool never saw the upstream's queue"
        assert answer.status_code == 503 and answer.json()["code"] == 2001, answer.text
        assert "retry-after" in answer.headers
