"""Every documented error code, produced by the bad input that causes it; the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import BLOCKED_TERM, KEYS, LiveServer, make_settings, run_server
from tests.api.samples import data_uri, mp4_bytes, pdf_bytes, png_bytes
from tests.inputs.helpers import LoopbackServer
from vlserve.api.app import create_app
from vlserve.testing import FakeEngine

GOOD = {"task": "vqa", "images": [data_uri(png_bytes())], "text": "ok?", "options": {"max_tokens": 2}}


def call(server: LiveServer, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
         path: str = "/infer") -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS['bob']}", **(headers or {})}
    if raw is not None:
        return httpx.post(server.url + path, content=raw, headers={**headers, "content-type": "application/json"},
                          timeout=60)
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60)


def expect(response: httpx.Response, code: int, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data = response.json()
    assert data["code"] == code, data
    assert data["request_id"].startswith("req_") and data["result"] is None
    assert "Traceback" not in response.text and 'File "' not in response.text
    return data


@pytest.fixture(autouse=True)
def still_serving(server: LiveServer) -> Iterator[None]:
    yield
    response = call(server, GOOD)
    assert response.status_code == 200 and response.json()["code"] == 0


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def vqa(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def test_1001_unsupported_or_corrupt_image(server: LiveServer) -> None:
    data = expect(call(server, vqa(images=[data_uri(b"GIF89a-broken")])), 1001, 415)
    assert "image" in data["msg"].lower()
    expect(call(server, vqa(images=[data_uri(b"%PDF-1.4 not an image", "image/png")])), 1001, 415)


def test_1002_video_longer_than_limit(server: LiveServer) -> None:
    body = {"task": "video_qa", "videos": [data_uri(mp4_bytes(40, fps=1, size=16), "video/mp4")], "text": "?",
            "options": {"max_tokens": 2}}
    data = expect(call(server, body), 1002, 400)
    assert "30" in data["msg"]


def test_1002_truncate_policy_warns(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With policy 'truncate' the first 30 s are analysed and the result carries a warning."""
    from vlserve.media import VisionSettings

    settings = make_settings(tmp_path_factory.mktemp("trunc"), limits={"video_policy": "truncate"})
    truncating = engine.with_vision(VisionSettings.from_checkpoint(engine.checkpoint.path, video_policy="truncate",
                                                                   video_max_frames=64))
    for url in run_server(create_app(settings, engine=truncating)):
        body = {"task": "video_qa", "videos": [data_uri(mp4_bytes(40, fps=1, size=16), "video/mp4")],
                "text": "?", "options": {"max_tokens": 2}}
        response = httpx.post(url + "/infer", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert "30 s" in response.json()["result"]["metadata"]["warnings"][0]


def test_1003_corrupt_video_and_1004_corrupt_document(server: LiveServer) -> None:
    expect(call(server, {"task": "video_qa", "videos": [data_uri(b"\x00\x00\x00\x18ftypmp42broken")],
                         "text": "?"}), 1003, 415)
    expect(call(server, {"task": "doc_analyze", "documents": [data_uri(b"%PDF-1.7 garbage")]}), 1004, 415)


def test_1005_payload_too_large(server: LiveServer) -> None:
    big = data_uri(b"\0" * (5 * 1024 * 1024))
    expect(call(server, vqa(images=[big])), 1005, 413)


def test_1006_too_many_inputs(server: LiveServer) -> None:
    expect(call(server, vqa(images=[data_uri(png_bytes())] * 4)), 1006, 400)  # server limit 3
    expect(call(server, {"task": "chart_parse", "images": [data_uri(png_bytes())] * 2}), 1006, 400)  # task: 1
    expect(call(server, {"task": "doc_analyze", "documents": [data_uri(pdf_bytes(5), "application/pdf")]}),
           1006, 400)  # 5 pages, limit 3


def test_1007_fetch_failure_and_1008_refused_url(server: LiveServer, web: LoopbackServer) -> None:
    # Loopback is private: refused by default, before any connection.
    data = expect(call(server, vqa(images=[web.url("/image")])), 1008, 403)
    assert "loopback" in data["msg"]
    expect(call(server, vqa(images=["ftp://example.invalid/x.png"])), 1008, 403)
    expect(call(server, vqa(images=["/etc/passwd"])), 1008, 403)  # outside the local root


def test_url_guard_with_allow_list(web: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(tmp_path_factory.mktemp("allow"), fetching={"allow_hosts": ["127.0.0.1"]})
    for url in run_server(create_app(settings, engine=FakeEngine())):  # about fetching: no model needed
        ok = httpx.post(url + "/infer", json=vqa(images=[web.url("/image")]), timeout=60)
        assert ok.status_code == 200, ok.text
        missing = httpx.post(url + "/infer", json=vqa(images=[web.url("/status/404")]), timeout=60)
        assert missing.status_code == 422 and missing.json()["code"] == 1007 and "404" in missing.json()["msg"]
        # An allowed URL redirecting to the metadata address is refused before any connect to it.
        hop = web.url("/to?url=http://169.254.169.254/latest/meta-data/")
        refused = httpx.post(url + "/infer", json=vqa(images=[hop]), timeout=60)
        assert refused.status_code == 403 and refused.json()["code"] == 1008


def test_2001_model_not_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("loading")
    settings = make_settings(tmp, model=str(tmp / "no-such-model"))
    for url in run_server(create_app(settings)):
        response = httpx.post(url + "/infer", json=GOOD, timeout=30)
        expect(response, 2001, 503)
        assert int(response.headers["retry-after"]) >= 1
        assert httpx.get(url + "/readyz").status_code == 503


def test_3001_sensitive_content_is_refused_and_audited(server: LiveServer) -> None:
    image = png_bytes(seed=42)
    data = expect(call(server, vqa(images=[data_uri(image)], text=f"tell me about {BLOCKED_TERM.upper()}")),
                  3001, 451)
    log = server.settings.moderation.audit_log.read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["request_id"] == data["request_id"] and entry["key_id"] == "bob"
    assert entry["stage"] == "input" and entry["reason"].startswith("blocked_terms")
    import hashlib

    assert entry["input_sha256"] == [hashlib.sha256(image).hexdigest()]
    assert BLOCKED_TERM not in log[-1] and "base64" not in log[-1]  # hashes only, no raw input


def test_4000_invalid_requests(server: LiveServer) -> None:
    expect(call(server, None, raw=b"{not json"), 4000, 400)
    data = expect(call(server, vqa(options={"temperature": 9})), 4000, 400)
    assert "temperature" in data["msg"]
    expect(call(server, vqa(options={"max_tokens": 999_999})), 4000, 400)
    expect(call(server, vqa(text="")), 4000, 400)  # vqa needs a question
    expect(call(server, vqa(images=["!!!not base64!!!"])), 1007, 422)  # read as a file under the root: missing
    expect(call(server, vqa(images=["data:image/png;base64,@@@"])), 4000, 400)


def test_4001_unauthorised(server: LiveServer) -> None:
    no_key = httpx.post(server.url + "/infer", json=GOOD, timeout=30)
    expect(no_key, 4001, 401)
    assert no_key.headers["www-authenticate"] == "Bearer"
    expect(call(server, GOOD, headers={"Authorization": "Bearer wrong"}), 4001, 401)


def test_4004_unknown_task(server: LiveServer) -> None:
    data = expect(call(server, vqa(task="telepathy")), 4004, 400)
    assert "vqa" in data["msg"]  # lists the available tasks


def test_4029_rate_limit(server: LiveServer) -> None:
    slow = {"Authorization": f"Bearer {KEYS['slow']}"}
    statuses = [call(server, GOOD, headers=slow).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    limited = call(server, GOOD, headers=slow)
    expect(limited, 4029, 429)
    assert int(limited.headers["retry-after"]) >= 1


def test_4040_unknown_endpoint(server: LiveServer) -> None:
    expect(httpx.get(server.url + "/nope"), 4040, 404)
