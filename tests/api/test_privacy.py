"""Privacy mode over real HTTP (docs/api.md#privacy-mode): no fetches, no metadata, no stored jobs,
artifacts served once, audit entries and logs without content, and ``/readyz`` saying so.

The engine is the FakeEngine test double: it records what it was given, which is how the tests see
the image the service handed on; every other component (HTTP, lanes, SQLite, audit log, the 3D build)
is the real one. Each privacy check has a control on an otherwise identical server without it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.helpers import BLOCKED_TERM, LiveServer, make_settings, run_server
from tests.api.samples import png_bytes
from vlserve.api.app import create_app
from vlserve.errors import EngineError
from vlserve.testing import FakeEngine

GPS_IFD = 0x8825


def gps_jpeg() -> tuple[bytes, np.ndarray]:
    """A JPEG whose EXIF names a camera and a place, and the pixels it decodes to."""
    pixels = np.random.default_rng(3).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=90)
    data = buffer.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)))


def start(tmp: Path, *, private: bool) -> Iterator[tuple[LiveServer, FakeEngine]]:
    settings = make_settings(tmp, privacy={"enabled": private},
                             fetching={"local_root": str(tmp / "files"), "allow_hosts": ["127.0.0.1"]})
    engine = FakeEngine("fake", reply="a cat")
    app = create_app(settings, engine=engine)
    for url in run_server(app):
        yield LiveServer(url, settings, app), engine


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, FakeEngine]]:
    yield from start(tmp_path_factory.mktemp("private"), private=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, FakeEngine]]:
    yield from start(tmp_path_factory.mktemp("plain"), private=False)


class CountingImageHost(BaseHTTPRequestHandler):
    """A web server on 127.0.0.1 serving one PNG and counting the requests it gets."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        CountingImageHost.hits.append(self.path)
        body = png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CountingImageHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/image.png"
    finally:
        httpd.shutdown()
        httpd.server_close()


def infer(server: LiveServer, **body: Any) -> httpx.Response:
    return httpx.post(server.url + "/infer", json={"task": "vqa", "text": "what is it?", **body}, timeout=60)


def test_readyz_says_privacy_mode_is_on(private: Any, plain: Any) -> None:
    assert httpx.get(private[0].url + "/readyz").json()["privacy"] is True
    assert httpx.get(plain[0].url + "/readyz").json()["privacy"] is False


def test_input_urls_are_refused_with_1008_before_any_fetch(private: Any, plain: Any, web: str) -> None:
    image_url = web
    assert infer(plain[0], images=[image_url]).json()["code"] == 0  # control: fetched (loopback allowed)
    assert len(CountingImageHost.hits) == 1
    requests_before = len(private[1].requests)
    reply = infer(private[0], images=[image_url])
    assert reply.status_code == 403
    assert reply.json()["code"] == 1008 and "privacy mode" in reply.json()["msg"]
    chat = httpx.post(private[0].url + "/v1/chat/completions", timeout=60, json={
        "model": "fake", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": image_url}}]}]})
    assert chat.status_code == 403 and chat.json()["error"]["code"] == 1008
    assert "privacy mode" in chat.json()["error"]["message"]
    stream = httpx.post(private[0].url + "/infer_stream", timeout=60,
                        json={"task": "vqa", "text": "what is it?", "images": [image_url]})
    assert stream.status_code == 403 and '"code":1008' in stream.text.replace(" ", "")
    assert len(private[1].requests) == requests_before  # nothing reached the engine either
    assert len(CountingImageHost.hits) == 1  # and nothing was fetched


def test_gps_and_camera_metadata_never_reach_the_engine(private: Any, plain: Any) -> None:
    data, pixels = gps_jpeg()
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    seen = {}
    for name, (server, engine) in (("plain", plain), ("private", private)):
        reply = infer(server, images=[uri])
        assert reply.status_code == 200, reply.text
        image = engine.requests[-1].messages[-1].content[0].image
        seen[name] = image
    assert dict(seen["plain"].getexif().get_ifd(GPS_IFD))  # control: the location is there without privacy
    stripped = seen["private"]
    assert not dict(stripped.getexif().get_ifd(GPS_IFD)) and 0x010F not in stripped.getexif()
    assert b"SecretCam" not in stripped.info.get("exif", b"")
    assert np.array_equal(np.asarray(stripped.convert("RGB")), pixels)  # the same pixels, not re-encoded


def test_async_jobs_are_refused_with_4030_and_nothing_is_stored(private: Any, plain: Any) -> None:
    data, _ = gps_jpeg()
    body = {"task": "vqa", "text": "what is it?", "images": [base64.b64encode(data).decode()]}
    assert httpx.post(plain[0].url + "/jobs", json=body).status_code == 202  # control
    reply = httpx.post(private[0].url + "/jobs", json=body)
    assert reply.status_code == 403
    assert reply.json()["code"] == 4030 and "privacy mode" in reply.json()["msg"]
    with sqlite3.connect(private[0].settings.jobs.sqlite_path) as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM job_bodies").fetchone()[0] == 0


FLANGE = {"name": "flange", "parts": [
    {"id": "disc", "shape": "cylinder", "op": "union", "size": {"diameter": 80, "height": 10}},
    {"id": "bore", "shape": "cylinder", "op": "subtract", "size": {"diameter": 20, "height": 12}},
]}


def build(server: LiveServer) -> dict[str, str]:
    pytest.importorskip("manifold3d", reason="the recon3d extra builds the meshes")
    reply = httpx.post(server.url + "/recon3d/build", json={"spec": FLANGE, "formats": ["stl"]}, timeout=120)
    assert reply.status_code == 200, reply.text
    files: dict[str, str] = reply.json()["result"]["answer"]["files"]
    return files


def test_artifacts_are_served_once_then_deleted(private: Any, plain: Any) -> None:
    server = private[0]
    files = build(server)
    directory = server.settings.recon3d.artifacts_dir / files["stl"].split("/")[2]
    assert (directory / "model.stl").is_file() or any(directory.iterdir())
    for url in files.values():
        assert httpx.get(server.url + url).status_code == 200
        assert httpx.get(server.url + url).status_code == 404  # served once
    deadline = time.monotonic() + 5
    while directory.exists() and time.monotonic() < deadline:  # deleted after the response was sent
        time.sleep(0.05)
    assert not directory.exists()
    control = build(plain[0])["stl"]
    assert httpx.get(plain[0].url + control).status_code == 200
    assert httpx.get(plain[0].url + control).status_code == 200  # control: kept without privacy


def test_of_simultaneous_downloads_one_gets_the_file(private: Any) -> None:
    server = private[0]
    url = server.url + build(server)["stl"]
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: httpx.get(url, timeout=30).status_code, range(6)))
    assert statuses == [200] + [404] * 5


def test_artifacts_not_downloaded_expire(private: Any) -> None:
    server = private[0]
    server.settings.privacy.artifact_seconds = 0.3
    try:
        files = build(server)
    finally:
        server.settings.privacy.artifact_seconds = 300.0
    directory = server.settings.recon3d.artifacts_dir / files["stl"].split("/")[2]
    deadline = time.monotonic() + 5
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not directory.exists()


def test_audit_entries_hold_no_hashes_of_content(private: Any, plain: Any) -> None:
    text = f"tell me about {BLOCKED_TERM}"
    entries = {}
    for name, (server, _) in (("plain", plain), ("private", private)):
        reply = infer(server, images=[base64.b64encode(gps_jpeg()[0]).decode()], text=text)
        assert reply.status_code == 451 and reply.json()["code"] == 3001
        lines = server.settings.moderation.audit_log.read_text().splitlines()
        entries[name] = json.loads(lines[-1])
    assert "text_sha256" in entries["plain"] and entries["plain"]["input_sha256"]  # control
    entry = entries["private"]
    assert entry["stage"] == "input" and entry["reason"].startswith("blocked_terms")
    assert not {"text_sha256", "input_sha256"} & set(entry)
    raw = private[0].settings.moderation.audit_log.read_text()
    assert BLOCKED_TERM not in raw and "tell me" not in raw


def test_a_failure_is_logged_without_the_answer(private: Any, caplog: pytest.LogCaptureFixture) -> None:
    server, engine = private
    engine.fail_with(EngineError("the answer was: SECRET-ANSWER-TEXT"))
    try:
        with caplog.at_level(logging.ERROR, logger="vlserve"):
            reply = infer(server, images=[base64.b64encode(gps_jpeg()[0]).decode()])
    finally:
        engine.fail_with(None)
    assert reply.status_code == 500 and reply.json()["code"] == 5000
    logged = [r for r in caplog.records if r.name == "vlserve.api"]
    assert any("EngineError" in r.getMessage() for r in logged)  # the failure is logged, by class and code
    assert not any("SECRET-ANSWER-TEXT" in r.getMessage() or r.exc_info for r in caplog.records)
