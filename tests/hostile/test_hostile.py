"""The hostile corpus (vlserve.testing.hostile) against a real server with the tiny model: every
case gets one of its documented answers (never a 5xx), and normal requests sent alongside the
flood get exactly the answers they get alone."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.helpers import LiveServer, make_settings, run_server
from vlserve.api.app import create_app
from vlserve.isolation import image_pool
from vlserve.testing.hostile import CASES, Case, data_uri, float_tiff, run_case, small_png


@pytest.fixture(scope="module")
def hostile_server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("hostile")
    settings = make_settings(
        tmp, limits={"max_images": 16, "max_body_bytes": 8 << 20, "max_tokens": 1024, "pdf_timeout_seconds": 3.0,
                     "max_pdf_pages": 8},
        scheduling={"media_memory_bytes": 256 << 20})
    for url in run_server(create_app(settings, engine=engine)):
        yield LiveServer(url, settings, None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_hostile_case_gets_a_documented_answer(hostile_server: LiveServer, case: Case) -> None:
    with httpx.Client(base_url=hostile_server.url, timeout=120) as client:
        status, code = run_case(client, case)
        assert (status, code) in case.allowed, f"{case.name}: got {status}/{code}, allowed {case.allowed}"
        assert status < 500
        normal = client.post("/infer", json=_normal(0))
        assert normal.status_code == 200 and normal.json()["code"] == 0


def _normal(seed: int) -> dict[str, Any]:
    return {"task": "vqa", "text": f"Describe picture {seed}.", "images": [data_uri(small_png(seed))],
            "options": {"max_tokens": 12, "temperature": 0}}


def test_normal_requests_beside_a_hostile_flood_get_their_solo_answers(hostile_server: LiveServer) -> None:
    with httpx.Client(base_url=hostile_server.url, timeout=300) as client:
        solo = [client.post("/infer", json=_normal(i)).json()["result"]["answer"] for i in range(4)]
        flood = [c for c in CASES if c.harm in ("sampling", "memory", "schema", "unicode", "text")]
        results: dict[str, Any] = {}

        def normal(i: int) -> None:
            results[f"normal{i}"] = client.post("/infer", json=_normal(i)).json()

        def hostile(case: Case) -> None:
            results[case.name] = run_case(client, case)

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(hostile, c) for c in flood] + [pool.submit(normal, i) for i in range(4)]
            for f in futures:
                f.result()
        for i in range(4):
            assert results[f"normal{i}"]["code"] == 0
            assert results[f"normal{i}"]["result"]["answer"] == solo[i]
        assert all(results[c.name][0] < 500 for c in flood)
        metrics = client.get("/metrics").text
        assert not re.search(r'vlserve_errors_total\{code="5\d\d\d"\} [1-9]', metrics), metrics


def test_a_slow_pdf_is_stopped_at_its_limit_while_images_keep_flowing(hostile_server: LiveServer) -> None:
    slow = next(c for c in CASES if c.name.startswith("PDF drawing"))
    with httpx.Client(base_url=hostile_server.url, timeout=120) as client:
        outcome: list[tuple[int, int]] = []
        worker = threading.Thread(target=lambda: outcome.append(run_case(client, slow)))
        worker.start()
        answers = [client.post("/infer", json=_normal(i)).json()["code"] for i in range(3)]
        worker.join(120)
    assert answers == [0, 0, 0]
    assert outcome == [(415, 1004)]


def test_a_float_tiff_is_decoded_in_a_niced_isolated_worker(hostile_server: LiveServer) -> None:
    """Heavy pixel work of one client runs at low priority outside the server process."""
    body = {"task": "vqa", "text": "What is it?", "images": [data_uri(float_tiff(600))], "options": {"max_tokens": 2}}
    with httpx.Client(base_url=hostile_server.url, timeout=300) as client:
        assert client.post("/infer", json=body).json()["code"] == 0
    workers = image_pool().pids()
    assert workers, "the float TIFF was decoded inside the server process"
    server = os.getpriority(os.PRIO_PROCESS, 0)
    assert all(os.getpriority(os.PRIO_PROCESS, pid) >= min(19, server + hostile_server.settings.limits.worker_nice)
               for pid in workers)
