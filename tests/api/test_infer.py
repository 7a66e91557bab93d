"""/infer and /infer_stream over a real server, called with raw httpx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema

from tests.api.helpers import LiveServer
from tests.api.samples import data_uri, mp4_bytes, pdf_bytes, png_bytes
from vlserve.tasks.chart_parse import CHART_SCHEMA


def post(server: LiveServer, body: dict[str, Any], headers: dict[str, str], path: str = "/infer") -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60)


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], None
    for line in response.text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_vqa_envelope(server: LiveServer, alice: dict[str, str]) -> None:
    body = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "What colour dominates?",
            "options": {"max_tokens": 12, "temperature": 0.7, "top_p": 0.9, "stream": False}}
    response = post(server, body, alice)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["code"] == 0 and data["msg"] == "success"
    assert data["request_id"].startswith("req_") and response.headers["x-request-id"] == data["request_id"]
    result = data["result"]
    assert isinstance(result["answer"], str)
    assert 0 < result["confidence"] <= 1
    meta = result["metadata"]
    assert meta["activated_experts"] is None  # dense model
    assert meta["output_tokens"] <= 12 and meta["input_tokens"] > meta["image_tokens"] > 0
    assert meta["processing_time_ms"] > 0


def test_moe_reports_activated_experts(open_server: LiveServer) -> None:
    response = post(open_server, {"task": "captioning", "images": [data_uri(png_bytes(seed=3))],
                                  "options": {"max_tokens": 6}}, {})
    meta = response.json()["result"]["metadata"]
    assert 1 <= meta["activated_experts"] <= 8


def test_chart_parse_is_schema_valid_json(server: LiveServer, alice: dict[str, str]) -> None:
    for seed in (0, 1):
        response = post(server, {"task": "chart_parse", "images": [data_uri(png_bytes(seed=seed))],
                                 "options": {"max_tokens": 120, "temperature": 1.0, "seed": seed}}, alice)
        assert response.status_code == 200, response.text
        jsonschema.validate(response.json()["result"]["answer"], CHART_SCHEMA)


def test_grounding_boxes_are_in_original_pixels(server: LiveServer, alice: dict[str, str]) -> None:
    response = post(server, {"task": "grounding", "images": [data_uri(png_bytes(400, 100))], "text": "the cat",
                             "options": {"max_tokens": 80}}, alice)
    assert response.status_code == 200, response.text
    answer = response.json()["result"]["answer"]
    assert answer["image_size"] == [400, 100]
    for obj in answer["objects"]:
        x1, y1, x2, y2 = obj["box"]
        assert 0 <= x1 <= x2 <= 400 and 0 <= y1 <= y2 <= 100
        rx1, _, rx2, _ = obj["bbox_2d"]
        assert x1 == round(min(rx1, rx2) * 400 / 1000)


def test_doc_analyze_renders_pdf_pages(server: LiveServer, alice: dict[str, str]) -> None:
    response = post(server, {"task": "doc_analyze", "documents": [data_uri(pdf_bytes(2), "application/pdf")],
                             "options": {"max_tokens": 8}}, alice)
    assert response.status_code == 200, response.text
    meta = response.json()["result"]["metadata"]
    assert meta["image_tokens"] > 0


def test_video_qa_and_truncation_policy(server: LiveServer, alice: dict[str, str]) -> None:
    response = post(server, {"task": "video_qa", "videos": [data_uri(mp4_bytes(3), "video/mp4")],
                             "text": "What happens?", "options": {"max_tokens": 6}}, alice)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["metadata"]["video_tokens"] > 0


def test_ocr_and_local_file_inside_root(server: LiveServer, alice: dict[str, str]) -> None:
    root = server.settings.fetching.local_root
    assert root is not None
    (root / "scan.png").write_bytes(png_bytes(seed=9))
    response = post(server, {"task": "ocr", "images": [str(root / "scan.png")], "options": {"max_tokens": 6}}, alice)
    assert response.status_code == 200, response.text


def test_stream_matches_seed_format(server: LiveServer, alice: dict[str, str]) -> None:
    body = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "Describe", "options": {"max_tokens": 10}}
    response = post(server, body, alice, "/infer_stream")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    tokens = [data for name, data in events if name == "token"]
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    name, final = events[-1]
    assert name == "final"
    assert final["answer"] == "".join(t["token"] for t in tokens).strip()
    assert final["metadata"]["output_tokens"] == 10
    # options.stream on /infer answers the same way, and greedy gives the same text.
    body["options"]["stream"] = True
    again = sse_events(post(server, body, alice))
    assert again[-1][1]["answer"] == final["answer"]
    body["options"]["stream"] = False
    assert post(server, body, alice).json()["result"]["answer"] == final["answer"]


def test_client_disconnect_cancels_generation(server: LiveServer, alice: dict[str, str]) -> None:
    body = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "Go on", "options": {"max_tokens": 1024}}
    with httpx.stream("POST", server.url + "/infer_stream", json=body, headers=alice, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("event: token")
    # The engine serves one generation at a time: the next request only finishes after the
    # abandoned one stopped, so it returning at all within the timeout shows cancellation.
    quick = post(server, {"task": "vqa", "images": [data_uri(png_bytes())], "text": "Hi",
                          "options": {"max_tokens": 2}}, alice)
    assert quick.status_code == 200


def test_tasks_and_health(server: LiveServer) -> None:
    tasks = {t["name"]: t for t in httpx.get(server.url + "/tasks").json()["tasks"]}
    assert {"vqa", "captioning", "chart_parse", "video_qa", "doc_analyze", "ocr", "grounding"} <= set(tasks)
    assert tasks["video_qa"]["inputs"]["videos"] == [1, 1]
    assert tasks["chart_parse"]["structured"] is True
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json()["ready"] is True
    assert "/infer" in httpx.get(server.url + "/openapi.json").json()["paths"]
