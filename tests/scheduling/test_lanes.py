"""Lanes over a real server: isolation, admission before media work, degradation, batching, metrics.

Admission and isolation run on FakeEngine (held and released by the test, so no sleeps); batching
runs on the real tiny model."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import make_settings, run_server
from tests.api.samples import data_uri, mp4_bytes, png_bytes
from vlserve.api.app import create_app
from vlserve.testing import FakeEngine


class CountingImageServer:
    """A loopback image host that counts how often it is asked (to prove media was not touched)."""

    def __init__(self) -> None:
        body = png_bytes(seed=3)
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                counter.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.hits = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/photo.png"


@pytest.fixture(scope="module")
def images() -> Iterator[CountingImageServer]:
    server = CountingImageServer()
    yield server
    server.httpd.shutdown()


def lanes(**interactive: Any) -> dict[str, Any]:
    # The engines named here are injected by each test (the checkpoints are only read at load).
    return {"lanes": {
        "interactive": {"queue_size": 0, "concurrency": 1, **interactive},
        "batch": {"queue_size": 8, "concurrency": 2},
        "video": {"queue_size": 16, "concurrency": 2, "model": "video"},
    }, "models": {"video": {"model": "tiny"}, "light": {"model": "tiny-moe"}}}


def quick_request(seed: int = 4) -> dict[str, Any]:
    return {"task": "captioning", "images": [data_uri(png_bytes(seed=seed))], "options": {"max_tokens": 4}}


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def occupy_then(url: str, engine: FakeEngine, second: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
    """Hold the lane's only running request on ``engine``, send ``second``, then let the first finish."""
    async with httpx.AsyncClient(timeout=60) as client:
        engine.hold()
        first = asyncio.create_task(client.post(url + "/infer", json=quick_request(seed=1)))
        await until(lambda: engine.active == 1)
        started = time.perf_counter()
        refused = await client.post(url + "/infer", json=second)
        refused.elapsed_s = time.perf_counter() - started  # type: ignore[attr-defined]
        engine.release()
        return await first, refused


def test_full_lane_refuses_with_2001_before_fetching(images: CountingImageServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(), fetching={"allow_hosts": ["127.0.0.1"]})
    main = FakeEngine("main-fake")
    for url in run_server(create_app(settings, engine=main, engines={"video": FakeEngine("video-fake")})):
        second = {"task": "vqa", "images": [images.url], "text": "hi", "options": {"max_tokens": 2}}
        first, refused = asyncio.run(occupy_then(url, main, second))
        assert first.status_code == 200
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert int(refused.headers["retry-after"]) >= 1
        assert images.hits == 0  # decided before the image was fetched
        assert refused.elapsed_s < 1.0  # type: ignore[attr-defined]
        assert len(main.requests) == 1  # the refused request never reached the engine
        metrics = httpx.get(url + "/metrics").text
        assert 'vlserve_refused_total{lane="interactive"} 1.0' in metrics
        assert 'vlserve_admitted_total{lane="interactive"} 1.0' in metrics
        # Once the lane drains, the same request is served (and now the image is fetched).
        assert httpx.post(url + "/infer", json=second, timeout=60).status_code == 200
        assert images.hits == 1


def test_full_lane_degrades_to_fallback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(fallback="light"))
    main, light = FakeEngine("main-fake"), FakeEngine("light-fake", reply="a lighter answer")
    for url in run_server(create_app(settings, engine=main, engines={"video": FakeEngine("video"), "light": light})):
        first, degraded = asyncio.run(occupy_then(url, main, quick_request()))
        assert first.json()["result"]["metadata"]["degraded"] is False
        assert degraded.status_code == 200
        body = degraded.json()
        assert body["code"] == 2001 and "lighter model" in body["msg"]
        meta = body["result"]["metadata"]
        assert meta["degraded"] is True and meta["model"] == "light-fake"
        assert body["result"]["answer"] == "a lighter answer" and len(light.requests) == 1  # really the fallback
        assert 'vlserve_degraded_total{lane="interactive"} 1.0' in httpx.get(url + "/metrics").text


def test_the_fallback_is_bounded_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(fallback="light", fallback_capacity=1))
    main, light = FakeEngine("main-fake"), FakeEngine("light-fake")

    async def flood(url: str) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            main.hold()
            light.hold()
            first = asyncio.create_task(client.post(url + "/infer", json=quick_request(1)))
            await until(lambda: main.active == 1)  # the lane's only place is taken
            on_fallback = asyncio.create_task(client.post(url + "/infer", json=quick_request(2)))
            await until(lambda: light.active == 1)  # ... and so is the fallback's only one
            refused = await client.post(url + "/infer", json=quick_request(3))
            main.release()
            light.release()
            return await first, await on_fallback, refused

    for url in run_server(create_app(settings, engine=main, engines={"video": FakeEngine("video"), "light": light})):
        first, on_fallback, refused = asyncio.run(flood(url))
        assert first.json()["code"] == 0
        assert on_fallback.json()["code"] == 2001 and on_fallback.json()["result"]["metadata"]["degraded"] is True
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert int(refused.headers["retry-after"]) >= 1
        # Both places are free again: the same request now runs in the lane.
        assert httpx.get(url + "/readyz").json()["lanes"]["interactive"]["degraded"] == 0
        assert httpx.post(url + "/infer", json=quick_request(3), timeout=60).json()["code"] == 0


def test_video_flood_does_not_delay_interactive(tmp_path: Path) -> None:
    """Eight videos wait on their lane's engine; an interactive request is answered meanwhile."""
    settings = make_settings(tmp_path, scheduling=lanes(queue_size=4))
    main, video_engine = FakeEngine("main-fake"), FakeEngine("video-fake")
    video = {"task": "video_qa", "videos": [data_uri(mp4_bytes(4, fps=4, size=64), "video/mp4")], "text": "?",
             "options": {"max_tokens": 120}}
    quick = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "hi", "options": {"max_tokens": 4}}

    async def run(url: str) -> tuple[int, bool, list[int]]:
        async with httpx.AsyncClient(timeout=60) as client:
            video_engine.hold()
            videos = [asyncio.create_task(client.post(url + "/infer", json=video)) for _ in range(8)]
            # Probing happens in the niced video workers: slow on a loaded machine, so wait generously.
            await until(lambda: video_engine.active == 2, timeout=120)  # the video lane runs two, six wait
            status = (await client.post(url + "/infer", json=quick)).status_code
            none_done = not any(v.done() for v in videos)
            video_engine.release()
            return status, none_done, [r.status_code for r in await asyncio.gather(*videos)]

    for url in run_server(create_app(settings, engine=main, engines={"video": video_engine})):
        status, none_done, statuses = asyncio.run(run(url))
        assert status == 200 and none_done
        assert statuses == [200] * 8 and video_engine.peak == 2 and len(main.requests) == 1


def test_concurrent_requests_are_batched_with_unbatched_outputs(engine: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling={"lanes": {"interactive": {"concurrency": 8, "queue_size": 8},
                                                             "batch": {}, "video": {}}, "batch_window_ms": 50})
    bodies = [{"task": "vqa", "images": [data_uri(png_bytes(64 + 16 * i, 64, seed=i))], "text": f"Question {i}?",
               "options": {"max_tokens": 6 + i}} for i in range(6)]
    alone = [engine.generate_sync(_generation(engine, body)).text.strip() for body in bodies]

    async def together(url: str) -> list[str]:
        async with httpx.AsyncClient(timeout=120) as client:
            responses = await asyncio.gather(*(client.post(url + "/infer", json=b) for b in bodies))
            return [r.json()["result"]["answer"] for r in responses]

    for url in run_server(create_app(settings, engine=engine)):
        assert asyncio.run(together(url)) == alone
        detail = httpx.get(url + "/readyz").json()
        assert detail["largest_batch"] > 1
        metrics = httpx.get(url + "/metrics").text
        steps = float(re.search(r'vlserve_decode_steps_total\{engine="main"\} (\S+)', metrics)[1])  # type: ignore[index]
        assert steps >= max(6 + i for i in range(6)) - 1  # the longest answer took that many steps at least
        assert 'vlserve_batch_rows{engine="main"} 0.0' in metrics  # all done: the batch is empty


def _generation(engine: Any, body: dict[str, Any]) -> Any:
    """The same prompt the service builds for ``body``, run directly on the engine."""
    from vlserve.media import VisionSettings, load_image
    from vlserve.runtime.protocol import GenerationRequest, SamplingParams
    from vlserve.tasks import TaskInput, get_task

    task = get_task(body["task"])
    import base64

    raw = base64.b64decode(body["images"][0].split(",", 1)[1])
    inp = TaskInput(text=body["text"], images=[load_image(raw, VisionSettings())])
    params = SamplingParams(**{**task.defaults, **body["options"]})
    return GenerationRequest(task.messages(inp), params)
