"""Cost-based admission over a real server: requests reserve what their media will cost, read from
headers before anything is decoded, against the lane's and the server's budgets."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image

from tests.api.helpers import LiveServer, make_settings, run_server
from tests.api.samples import data_uri
from vlserve.api.app import create_app

MB = 1 << 20


def _png(width: int, height: int) -> bytes:
    """A real, honestly compressed PNG: a random tile repeated (small on the wire, large decoded)."""
    tile = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pixels = np.tile(tile, (height // 64 + 1, width // 64 + 1, 1))[:height, :width]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _pdf(width_pt: float, height_pt: float) -> bytes:
    document = pdfium.PdfDocument.new()
    document.new_page(width_pt, height_pt)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def budget_server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A 48 MiB media budget shared by all lanes; the batch lane waits at most 2 s for room."""
    tmp = tmp_path_factory.mktemp("budget")
    settings = make_settings(
        tmp, limits={"max_body_bytes": 16 * MB, "max_input_bytes": 16 * MB, "max_images": 4, "max_tokens": 512},
        scheduling={"media_memory_bytes": 48 * MB,
                    "lanes": {"interactive": {"concurrency": 4, "queue_size": 8, "queue_timeout": 120.0},
                              "batch": {"queue_timeout": 2.0}}})
    for url in run_server(create_app(settings, engine=engine)):
        yield LiveServer(url, settings, None)


def _infer(server: LiveServer, images: list[bytes], task: str = "vqa", **options: Any) -> httpx.Response:
    body = {"task": task, "text": "What is it?", "images": [data_uri(i) for i in images],
            "options": {"max_tokens": 2, **options}}
    return httpx.post(server.url + "/infer", json=body, timeout=120)


def _used(server: LiveServer) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    match = re.search(r'vlserve_budget_used\{budget="server",kind="memory_bytes"\} ([0-9.e+]+)', metrics)
    assert match, metrics
    return float(match.group(1))


def test_media_costlier_than_the_budget_are_refused_before_decoding(budget_server: LiveServer) -> None:
    big = _infer(budget_server, [_png(2600, 2600)])  # ~6.8 Mpx: its decoding alone needs ~90 MiB
    assert big.status_code == 413 and big.json()["code"] == 1005
    assert "server budget" in big.json()["msg"]
    pages = {"task": "doc_analyze", "documents": [data_uri(_pdf(14_400, 14_400), "application/pdf")],
             "options": {"max_tokens": 2}}
    huge_page = httpx.post(budget_server.url + "/infer", json=pages, timeout=120)  # 200 x 200 inches
    assert huge_page.status_code == 413 and huge_page.json()["code"] == 1005
    assert _used(budget_server) == 0
    assert _infer(budget_server, [_png(64, 64)]).json()["code"] == 0  # the server is fine


def test_requests_that_fit_only_one_at_a_time_all_succeed_in_turn(budget_server: LiveServer) -> None:
    image = _png(1000, 1000)  # ~40 MiB each: two never fit together in 48 MiB
    results: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: results.append(_infer(budget_server, [image]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.json()["code"] for r in results] == [0, 0, 0]
    assert _used(budget_server) == 0


def test_room_held_by_another_lane_ends_in_2001_after_the_lane_timeout(budget_server: LiveServer) -> None:
    image = _png(1000, 1000)
    started = threading.Event()
    release = threading.Event()

    def hold() -> None:  # streams until told to go: its reservation is held all that time
        body = {"task": "vqa", "text": "Talk.", "images": [data_uri(image)],
                "options": {"max_tokens": 500, "temperature": 0.9, "seed": 1}}
        with httpx.stream("POST", budget_server.url + "/infer_stream", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("event: token"):
                    started.set()
                if release.is_set():
                    return  # leaving closes the stream, which cancels the generation

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(120)
        refused = _infer(budget_server, [image], task="ocr")  # the batch lane, same server budget
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert refused.headers["retry-after"]
    finally:
        release.set()
        holder.join(120)
    deadline = time.monotonic() + 60
    while _used(budget_server) != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _used(budget_server) == 0  # the cancelled request gave its reservation back


def test_request_bodies_held_in_flight_are_bounded_server_wide(engine: Any,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bodies stay in memory until their request ends: beyond http.max_inflight_body_bytes, 2001."""
    tmp = tmp_path_factory.mktemp("bodies")
    settings = make_settings(tmp, http={"max_inflight_body_bytes": 300_000})
    noise = np.random.default_rng(3).integers(0, 256, (220, 220, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    image = buf.getvalue()  # noise does not compress
    assert 150_000 < len(data_uri(image)) < 300_000
    body = {"task": "vqa", "text": "Talk.", "images": [data_uri(image)],
            "options": {"max_tokens": 120, "temperature": 0.9, "seed": 2}}
    for url in run_server(create_app(settings, engine=engine)):
        _refuse_while_held(url, body)


def _refuse_while_held(url: str, body: dict[str, Any]) -> None:
    started, release = threading.Event(), threading.Event()
    held = {**body, "options": {**body["options"], "max_tokens": 1000}}

    def hold() -> None:
        with httpx.stream("POST", url + "/infer_stream", json=held, timeout=300) as response:
            for _ in response.iter_lines():
                started.set()
                if release.is_set():
                    return

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(120)
        refused = httpx.post(url + "/infer", json=body, timeout=60)
        assert refused.status_code == 503 and refused.json()["code"] == 2001
        assert refused.headers["retry-after"]
    finally:
        release.set()
        holder.join(120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the held body is given back once its request ends
        answer = httpx.post(url + "/infer", json={**body, "options": {"max_tokens": 2}}, timeout=60)
        if answer.status_code == 200:
            break
        time.sleep(0.5)
    assert answer.json()["code"] == 0
