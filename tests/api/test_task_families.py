"""visual_coding, gui_action, doc_parse and extract over a real server with the real tiny model.

The tiny model's answers are random, but structured answers are schema-constrained: so the tests
assert the answers' structure, and that every coordinate is the model's raw 0–1000 value scaled
to the original (non-square) image; bad inputs get their documented codes.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import pytest
from PIL import Image

from tests.api.helpers import KEYS, LiveServer
from tests.api.samples import data_uri, pdf_bytes, png_bytes
from vlserve.tasks.gui_action import CALL_SCHEMA
from vlserve.tasks.visual_coding.render import find_chromium

WIDTH, HEIGHT = 640, 360
SCREEN = data_uri(png_bytes(WIDTH, HEIGHT, seed=3))
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string", "maxLength": 16},
        "total": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "paid": {"type": "boolean"},
        "lines": {"type": "array", "maxItems": 2, "items": {
            "type": "object", "properties": {"item": {"type": "string", "maxLength": 12},
                                             "qty": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["item", "qty"], "additionalProperties": False}},
    },
    "required": ["invoice_number", "total", "paid", "lines"],
    "additionalProperties": False,
}


def post(server: LiveServer, body: dict[str, Any], key: str = "alice") -> httpx.Response:
    return httpx.post(server.url + "/infer", json=body, headers={"Authorization": f"Bearer {KEYS[key]}"},
                      timeout=300)


def answer_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]["answer"]


def refused(response: httpx.Response, code: int, *words: str) -> None:
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["msg"], body["msg"]


def test_tasks_lists_the_new_families_with_their_rules(server: LiveServer) -> None:
    tasks = {t["name"]: t for t in httpx.get(server.url + "/tasks").json()["tasks"]}
    assert tasks["visual_coding"]["inputs"]["images"] == [1, 1] and "render" in tasks["visual_coding"]["options"]
    assert tasks["gui_action"]["inputs"]["text_required"] is True and tasks["gui_action"]["structured"] is True
    assert "history" in tasks["gui_action"]["options"]
    assert tasks["doc_parse"]["inputs"]["documents"] == [0, 2] and tasks["doc_parse"]["lane"] == "batch"
    assert tasks["extract"]["structured"] is True and "json_schema" in tasks["extract"]["options"]


def test_visual_coding_answers_a_checked_page(server: LiveServer) -> None:
    answer = answer_of(post(server, {"task": "visual_coding", "images": [SCREEN], "options": {"max_tokens": 48}}))
    assert isinstance(answer["html"], str) and isinstance(answer["valid"], bool)
    assert isinstance(answer["parse_errors"], int) and isinstance(answer["external_resources"], list)
    assert answer["image_size"] == [WIDTH, HEIGHT]
    assert answer["render"] is None  # not asked for


def test_visual_coding_renders_an_artefact_only_its_key_reads(server: LiveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if find_chromium(server.settings.rendering.chromium) is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the 'demo' extra)")
    # A loaded 2-core machine may take a while to start a browser; the default is for servers.
    monkeypatch.setattr(server.settings.rendering, "timeout_seconds", 240.0)
    response = post(server, {"task": "visual_coding", "images": [SCREEN],
                             "options": {"max_tokens": 32, "render": True}})
    answer = answer_of(response)
    render = answer["render"]
    assert render is not None, answer["warnings"]
    request_id = response.json()["request_id"]
    assert render["file"] == f"/artifacts/{request_id}/page.png"
    png = httpx.get(server.url + render["file"], headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert png.status_code == 200
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.format == "PNG" and image.size == (render["width"], render["height"])
        assert image.size == (server.settings.rendering.width, server.settings.rendering.height)
    other = httpx.get(server.url + render["file"], headers={"Authorization": f"Bearer {KEYS['bob']}"})
    assert other.status_code == 404


def test_visual_coding_input_rules(server: LiveServer) -> None:
    refused(post(server, {"task": "visual_coding", "options": {"max_tokens": 8}}), 4000, "at least 1 images")
    refused(post(server, {"task": "visual_coding", "images": [SCREEN, SCREEN], "options": {"max_tokens": 8}}), 1006)
    refused(post(server, {"task": "vqa", "images": [SCREEN], "text": "?", "options": {"render": True}}), 4000,
            "options.render")


def test_gui_action_coordinates_are_pixels_of_the_screenshot(server: LiveServer) -> None:
    history = ["Step one: opened the settings", {"name": "computer_use",
                                                  "arguments": {"action": "left_click", "coordinate": [500, 500]}}]

    def ask(seed: int) -> Any:
        return answer_of(post(server, {
            "task": "gui_action", "images": [SCREEN], "text": "Turn on dark mode",
            "options": {"max_tokens": 64, "temperature": 1.0, "seed": seed, "history": history}}))

    with ThreadPoolExecutor(8) as pool:  # sampled with 8 seeds at once: the server batches them
        answers = list(pool.map(ask, range(8)))
    pointed = 0
    for answer in answers:
        jsonschema.validate(answer["call"], CALL_SCHEMA)
        assert answer["image_size"] == [WIDTH, HEIGHT]
        action, arguments = answer["action"], answer["call"]["arguments"]
        assert action["type"] in {"click", "move", "drag", "type", "key", "scroll", "wait", "done"}
        if "coordinate" in arguments:
            rx, ry = arguments["coordinate"]
            assert 0 <= rx <= 1000 and 0 <= ry <= 1000
            assert action["x"] == min(WIDTH - 1, round(rx * WIDTH / 1000))
            assert action["y"] == min(HEIGHT - 1, round(ry * HEIGHT / 1000))
            pointed += 1
    assert pointed > 0, "no answer pointed at the screen: the scaling went untested"


def test_gui_action_bad_inputs(server: LiveServer) -> None:
    base = {"task": "gui_action", "images": [SCREEN], "text": "Click OK", "options": {"max_tokens": 64}}
    refused(post(server, {**base, "text": "  "}), 4000, "instruction")
    refused(post(server, {**base, "images": []}), 4000, "at least 1 images")
    refused(post(server, {**base, "images": [SCREEN, SCREEN]}), 1006)
    limits = server.settings.limits
    too_many = ["clicked"] * (limits.max_history_steps + 1)
    refused(post(server, {**base, "options": {"max_tokens": 64, "history": too_many}}), 4000, "options.history",
            str(limits.max_history_steps))
    too_long = ["x" * (limits.max_history_chars + 1)]
    refused(post(server, {**base, "options": {"max_tokens": 64, "history": too_long}}), 4000,
            str(limits.max_history_chars))
    # History is caller text: with the instruction it counts against max_text_chars.
    steps = limits.max_history_steps
    near = ["y" * (limits.max_history_chars // steps)] * steps
    huge_text = "z" * (limits.max_text_chars - sum(map(len, near)) + 1)
    refused(post(server, {**base, "text": huge_text, "options": {"max_tokens": 64, "history": near}}), 4000,
            f"at most {limits.max_text_chars}")


def test_doc_parse_pages_keep_their_own_sizes(server: LiveServer) -> None:
    answer = answer_of(post(server, {
        "task": "doc_parse", "images": [SCREEN], "documents": [data_uri(pdf_bytes(2), "application/pdf")],
        "options": {"max_tokens": 96}}))
    dpi = server.settings.limits.pdf_dpi
    pdf_page = [round(300 * dpi / 72), round(400 * dpi / 72)]  # pdf_bytes' pages are 300 × 400 pt
    assert answer["pages"] == [{"page": 1, "size": [WIDTH, HEIGHT]}, {"page": 2, "size": pdf_page},
                               {"page": 3, "size": pdf_page}]
    assert isinstance(answer["markdown"], str) and isinstance(answer["warnings"], list)
    for element in answer["elements"]:  # random text rarely holds any; when it does, they are in their page
        width, height = answer["pages"][element["page"] - 1]["size"]
        x1, y1, x2, y2 = element["box"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_doc_parse_needs_a_page(server: LiveServer) -> None:
    refused(post(server, {"task": "doc_parse", "options": {"max_tokens": 8}}), 4000, "image, video or document")


def test_extract_answers_valid_against_the_callers_schema(server: LiveServer) -> None:
    for seed in range(2):
        answer = answer_of(post(server, {
            "task": "extract", "images": [SCREEN], "text": "Read the invoice",
            "options": {"max_tokens": 160, "temperature": 1.0, "seed": seed, "json_schema": INVOICE_SCHEMA}}))
        assert answer["valid"] is True and answer["errors"] == []
        jsonschema.validate(answer["data"], INVOICE_SCHEMA)


def test_extract_refuses_bad_schemas_with_4000(server: LiveServer) -> None:
    base = {"task": "extract", "images": [SCREEN], "options": {"max_tokens": 64}}

    def with_schema(schema: Any) -> httpx.Response:
        return post(server, {**base, "options": {"max_tokens": 64, "json_schema": schema}})

    refused(post(server, base), 4000, "options.json_schema")
    refused(with_schema({"type": "object", "properties": {"a": {"type": "strin"}}}), 4000, "not a valid JSON Schema")
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(server.settings.limits.max_schema_depth + 2):
        deep = {"type": "array", "items": deep}
    refused(with_schema(deep), 4000, "deeper")
    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "d" * 200} for i in range(400)}}
    refused(with_schema(big), 4000, "bytes")
    refused(with_schema({"type": "array", "items": {"type": "string"}, "minItems": 10_000_000}), 4000, "max_tokens")
    refused(with_schema({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1}},
                         "$ref": "#/$defs/n"}), 4000, "recursive")
    refused(with_schema({"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/s.json"}}}), 4000,
            "own definitions")
    refused(post(server, {"task": "vqa", "images": [SCREEN], "text": "?",
                          "options": {"json_schema": {"type": "string"}}}), 4000, "options.json_schema")
    refused(post(server, {**base, "images": [], "options": {"json_schema": INVOICE_SCHEMA}}), 4000,
            "image, video or document")


def test_gui_action_streams_its_call_and_ends_with_the_typed_action(server: LiveServer) -> None:
    body = {"task": "gui_action", "images": [SCREEN], "text": "Close the dialog",
            "options": {"max_tokens": 64, "stream": True}}
    response = httpx.post(server.url + "/infer_stream", json=body,
                          headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=300)
    assert response.status_code == 200, response.text
    events, name = [], None
    for line in response.text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    tokens = "".join(data["token"] for kind, data in events if kind == "token")
    final = [data for kind, data in events if kind == "final"]
    assert len(final) == 1 and final[0]["code"] == 0
    answer = final[0]["answer"]
    assert json.loads(tokens) == answer["call"]  # the streamed text is the call itself (no "<tool_call>")
    assert answer["image_size"] == [WIDTH, HEIGHT] and "type" in answer["action"]
