"""Lanes over a real server: isolation, admission before media work, degradation, batching, metrics."""

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


def long_request() -> dict[str, Any]:
    return {"task": "vqa", "images": [data_uri(png_bytes())], "text": "Tell me everything.",
            "options": {"max_tokens": 400}}


async def occupy_then(url: str, second: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        first = asyncio.create_task(client.post(url + "/infer", json=long_request()))
        await asyncio.sleep(0.5)  # the first request holds the only place in the lane
        started = time.perf_counter()
        refused = await client.post(url + "/infer", json=second)
        refused.elapsed_s = time.perf_counter() - started  # type: ignore[attr-defined]
        return await first, refused


def test_full_lane_refuses_with_2001_before_fetching(engine: Any, images: CountingImageServer,
                                                      tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(), fetching={"allow_hosts": ["127.0.0.1"]})
    for url in run_server(create_app(settings, engine=engine, engines={"video": engine})):
        second = {"task": "vqa", "images": [images.url], "text": "hi", "options": {"max_tokens": 2}}
        first, refused = asyncio.run(occupy_then(url, second))
        assert first.status_code == 200
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert int(refused.headers["retry-after"]) >= 1
        assert images.hits == 0  # decided before the image was fetched
        assert refused.elapsed_s < 1.0  # type: ignore[attr-defined]
        metrics = httpx.get(url + "/metrics").text
        assert 'vlserve_refused_total{lane="interactive"} 1.0' in metrics
        assert 'vlserve_admitted_total{lane="interactive"} 1.0' in metrics
        # Once the lane drains, the same request is served (and now the image is fetched).
        assert httpx.post(url + "/infer", json=second, timeout=60).status_code == 200
        assert images.hits == 1


def test_full_lane_degrades_to_fallback(engine: Any, moe_engine: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(fallback="light"))
    for url in run_server(create_app(settings, engine=engine, engines={"video": engine, "light": moe_engine})):
        second = {"task": "captioning", "images": [data_uri(png_bytes(seed=4))], "options": {"max_tokens": 4}}
        first, degraded = asyncio.run(occupy_then(url, second))
        assert first.json()["result"]["metadata"]["degraded"] is False
        assert degraded.status_code == 200
        body = degraded.json()
        assert body["code"] == 2001 and "lighter model" in body["msg"]
        meta = body["result"]["metadata"]
        assert meta["degraded"] is True and meta["model"] == "tiny-moe"
        assert 1 <= meta["activated_experts"] <= 8  # really answered by the MoE fallback
        assert 'vlserve_degraded_total{lane="interactive"} 1.0' in httpx.get(url + "/metrics").text


def test_the_fallback_is_bounded_too(engine: Any, moe_engine: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduling=lanes(fallback="light", fallback_capacity=1))
    quick = {"task": "captioning", "images": [data_uri(png_bytes(seed=4))], "options": {"max_tokens": 4}}
    longer = {**long_request(), "options": {"max_tokens": 1024}}  # runs for seconds

    async def flood(url: str) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            first = asyncio.create_task(client.post(url + "/infer", json=longer))
            await asyncio.sleep(0.5)  # the lane's only place is taken
            on_fallback = asyncio.create_task(client.post(url + "/infer", json=longer))
            await asyncio.sleep(0.5)  # ... and so is the fallback's only one
            refused = await client.post(url + "/infer", json=quick)
            return await first, await on_fallback, refused

    for url in run_server(create_app(settings, engine=engine, engines={"video": engine, "light": moe_engine})):
        first, on_fallback, refused = asyncio.run(flood(url))
        assert first.json()["code"] == 0
        assert on_fallback.json()["code"] == 2001 and on_fallback.json()["result"]["metadata"]["degraded"] is True
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert int(refused.headers["retry-after"]) >= 1
        # Both places are free again: the same request now runs in the lane.
        assert httpx.get(url + "/readyz").json()["lanes"]["interactive"]["degraded"] == 0
        assert httpx.post(url + "/infer", json=quick, timeout=60).json()["code"] == 0


def test_video_flood_does_not_delay_interactive(engine: Any, tiny_dir: Path, tmp_path: Path) -> None:
    from vlserve.runtime.local import LocalEngine

    video_engine = LocalEngine(tiny_dir, name="tiny-video")  # the video lane's own model instance
    settings = make_settings(tmp_path, scheduling=lanes(queue_size=4))
    video = {"task": "video_qa", "videos": [data_uri(mp4_bytes(4, fps=4, size=64), "video/mp4")], "text": "?",
             "options": {"max_tokens": 120}}
    quick = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "hi", "options": {"max_tokens": 4}}

    async def run(url: str) -> tuple[list[float], float, list[int]]:
        async with httpx.AsyncClient(timeout=300) as client:
            async def timed(body: dict[str, Any]) -> tuple[float, int]:
                response = await client.post(url + "/infer", json=body)
                return time.perf_counter(), response.status_code

            videos = [asyncio.create_task(timed(video)) for _ in range(8)]
            await asyncio.sleep(0.3)
            interactive_done, status = await timed(quick)
            assert status == 200
            results = await asyncio.gather(*videos)
            return [t for t, _ in results], interactive_done, [s for _, s in results]

    for url in run_server(create_app(settings, engine=engine, engines={"video": video_engine})):
        video_done, interactive_done, statuses = asyncio.run(run(url))
        assert statuses == [200] * 8
        # The interactive request did not queue behind the flood: it finished before most videos.
        assert sum(t > interactive_done for t in video_done) >= 6


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
