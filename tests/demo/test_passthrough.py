"""``vlserve demo``'s pass-through over real HTTP: what it forwards, how it adds the key, streaming."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.demo.helpers import KEY, run_server, scene_png, server_settings


@pytest.fixture(scope="module")
def demo_with_key(keyed_server: str) -> Iterator[str]:
    from vlserve.demo import create_demo_app

    yield from run_server(create_demo_app(keyed_server, KEY))


@pytest.fixture(scope="module")
def demo_without_key(keyed_server: str) -> Iterator[str]:
    from vlserve.demo import create_demo_app

    yield from run_server(create_demo_app(keyed_server))


def test_page_and_config(demo_with_key: str, keyed_server: str) -> None:
    page = httpx.get(demo_with_key + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and 'src="app.js"' in page.text
    viewer = httpx.get(demo_with_key + "/vendor/model-viewer.min.js")
    assert viewer.headers["content-type"].startswith("text/javascript")
    config = httpx.get(demo_with_key + "/config.json").json()
    assert config == {"api": "api/", "server": keyed_server, "key_configured": True}
    assert KEY not in httpx.get(demo_with_key + "/config.json").text


def test_key_is_added_unless_the_browser_sent_one(demo_with_key: str, demo_without_key: str) -> None:
    refused = httpx.get(demo_without_key + "/api/jobs")
    assert refused.status_code == 401 and refused.json()["code"] == 4001
    assert httpx.get(demo_with_key + "/api/jobs").status_code == 200
    own = httpx.get(demo_without_key + "/api/jobs", headers={"Authorization": f"Bearer {KEY}"})
    assert own.status_code == 200
    wrong = httpx.get(demo_with_key + "/api/jobs", headers={"Authorization": "Bearer vls-wrong"})
    assert wrong.status_code == 401  # the browser's own key wins, even a wrong one


@pytest.mark.parametrize("path", ["v1/models", "metrics", "docs", "../tasks", "artifacts/../../etc/passwd",
                                  "jobs/a/b", "tasks/extra"])
def test_only_the_task_api_is_forwarded(demo_with_key: str, path: str) -> None:
    reply = httpx.get(f"{demo_with_key}/api/{path}")
    assert reply.status_code == 404
    assert "x-request-id" not in reply.headers  # answered by the demo: the server tags every reply


def test_stream_passes_through_event_by_event(demo_with_key: str, tmp_path: Path) -> None:
    image = "data:image/png;base64," + base64.b64encode(scene_png(tmp_path / "s.png").read_bytes()).decode()
    body = {"task": "vqa", "images": [image], "text": "What is it?", "options": {"max_tokens": 5}}
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("POST", demo_with_key + "/api/infer_stream", json=body, timeout=120) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in reply.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    assert [n for n, _ in events] == ["token"] * 5 + ["final"]
    assert events[-1][1]["metadata"]["output_tokens"] == 5


def test_errors_pass_through_with_their_code(demo_with_key: str) -> None:
    reply = httpx.post(demo_with_key + "/api/infer", json={"task": "nope", "text": "x"})
    assert reply.status_code == 400 and reply.json()["code"] == 4004


def test_cli_refuses_a_server_that_is_not_a_url() -> None:
    from vlserve.cli.main import app

    result = CliRunner().invoke(app, ["demo", "--server", "localhost:8000"])
    assert result.exit_code == 2 and "--server must be an http(s) URL" in result.output


def test_ui_mount_follows_expose_ui(engine: Any, tmp_path: Path) -> None:
    from vlserve.api.app import create_app

    for expose, status in ((True, 200), (False, 404)):
        app = create_app(server_settings(tmp_path / str(expose), expose_ui=expose), engine=engine)
        for url in run_server(app):
            page = httpx.get(url + "/ui/")
            assert page.status_code == status
            if expose:
                assert 'src="app.js"' in page.text and httpx.get(url + "/ui/app.js").status_code == 200
                assert httpx.get(url + "/ui").status_code in (307, 308)  # to /ui/, where relative paths work
