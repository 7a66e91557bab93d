"""The render-back of visual_coding in a real headless chromium: the page is hostile, so no request
of any kind may leave the browser, scripts never run, local files never show, and a page that
takes too long ends in a warning, not a hung request."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlserve.config import Rendering
from vlserve.tasks.visual_coding.render import _load_and_capture, find_chromium, render_png

GREEN = (0, 200, 0)


@pytest.fixture(scope="module")
def chromium() -> Path:
    found = find_chromium(None)
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the 'demo' extra)")
    return found


class Listener:
    """A TCP port on 127.0.0.1 that counts every connection made to it (any protocol)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def settings(**overrides: object) -> Rendering:
    # Generous: a loaded 2-core machine can take long to start a browser.
    return Rendering.model_validate({"width": 320, "height": 200, "timeout_seconds": 240, **overrides})


def pixels(path: Path) -> np.ndarray:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def near(colour: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(np.abs(colour - np.array(rgb)).sum(axis=-1) < 60)


def test_a_hostile_page_reaches_nothing(chromium: Path, listener: Listener, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{listener.port}"
    secret = tmp_path / "secret.html"  # a local file the page tries to show: all green if it shows
    secret.write_text(f"<body style='margin:0;background:rgb{GREEN}'>secret</body>")
    html = f"""<!doctype html><html><head>
<link rel="stylesheet" href="{base}/style.css"><link rel="preconnect" href="{base}">
<link rel="dns-prefetch" href="//{listener.port}.example.invalid"><link rel="prefetch" href="{base}/next">
<link rel="icon" href="{base}/favicon.ico">
<style>@import url("{base}/import.css"); @font-face {{font-family: f; src: url({base}/font.woff)}}
body {{margin: 0; font-family: f; background-image: url({base}/bg.png)}}</style>
<script src="{base}/lib.js"></script>
<script>fetch("{base}/fetch"); new WebSocket("ws://127.0.0.1:{listener.port}/ws");
document.documentElement.style.background = "rgb{GREEN}";</script>
</head><body>
<div style="width:100px;height:40px;background:rgb(255,0,0)"></div>
<img src="{base}/img.png" srcset="{base}/img2.png 2x"><video poster="{base}/poster.png"></video>
<object data="{base}/object"></object><embed src="{base}/embed">
<iframe src="file://{secret}" style="position:absolute;left:0;top:50px;width:320px;height:150px;border:0"></iframe>
<iframe src="{base}/frame"></iframe><audio src="{base}/a.mp3" autoplay></audio>
<iframe srcdoc="<img src='{base}/in-srcdoc.png'>"></iframe>
<svg width="10" height="10"><image href="{base}/svg.png" width="10" height="10"/></svg>
<form action="{base}/post" method="post"><input type="image" src="{base}/button.png"></form>
</body></html>"""
    result = render_png(html, tmp_path / "page.png", settings(chromium=chromium))
    assert result.path is not None, result.warnings
    assert listener.connections == 0
    assert any(url.startswith(base) for url in result.blocked)
    assert any("outside resource" in w for w in result.warnings)
    image = pixels(result.path)
    assert image.shape == (200, 320, 3)
    assert near(image[5:35, 5:95], (255, 0, 0)).all()  # the page itself rendered
    assert not near(image, GREEN).any()  # no script ran, and the local file did not show


def test_a_page_cannot_navigate_to_a_local_file(chromium: Path, listener: Listener, tmp_path: Path) -> None:
    secret = tmp_path / "secret.html"
    secret.write_text(f"<body style='margin:0;background:rgb{GREEN}'>secret</body>")
    for target in (f"file://{secret}", f"http://127.0.0.1:{listener.port}/next"):
        html = f'<meta http-equiv="refresh" content="0; url={target}"><body style="background:#fff">wait</body>'
        result = render_png(html, tmp_path / "page.png", settings(chromium=chromium))
        assert result.path is not None, result.warnings
        assert not near(pixels(result.path), GREEN).any()
    assert listener.connections == 0


def test_a_page_that_takes_too_long_ends_in_a_warning(chromium: Path, tmp_path: Path) -> None:
    # Without scripts a page cannot loop; what can take time is the browser itself. A deadline
    # too short for any start shows the bound holds: no picture, a warning, nothing left behind.
    result = render_png("<p>hello</p>", tmp_path / "slow.png", settings(chromium=chromium, timeout_seconds=0.001))
    assert result.path is None and not (tmp_path / "slow.png").exists()
    assert any("no picture" in w for w in result.warnings)


def test_without_a_browser_the_answer_says_so(tmp_path: Path) -> None:
    missing = render_png("<p>x</p>", tmp_path / "x.png", settings(chromium=tmp_path / "no-such-chromium"))
    assert missing.path is None and "chromium is not installed" in missing.warnings[0]
    off = render_png("<p>x</p>", tmp_path / "x.png", settings(enabled=False))
    assert off.path is None and "turned off" in off.warnings[0]


class NavigatingPage:
    """Test double for a Playwright page whose document is replaced mid-way ``fail`` times (a meta
    refresh racing the load or the capture), as Playwright reports it: an ``Error`` without
    "Timeout"."""

    def __init__(self, fail: int, message: str = "Navigation interrupted by another navigation") -> None:
        self.fail, self.message = fail, message
        self.calls: list[str] = []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.fail:
            self.fail -= 1
            raise RuntimeError(self.message)

    def set_content(self, html: str, **_: object) -> None:
        self._step("load")

    def wait_for_load_state(self, state: str, **_: object) -> None:
        self.calls.append("wait")

    def screenshot(self, **_: object) -> None:
        self._step("capture")


def test_a_page_replaced_while_loading_or_captured_is_captured_again(tmp_path: Path) -> None:
    deadline = time.monotonic() + 10
    page = NavigatingPage(fail=2)
    _load_and_capture(page, "<p>x</p>", tmp_path / "p.png", deadline, RuntimeError)
    assert page.calls == ["load", "wait", "capture", "wait", "capture"]
    with pytest.raises(RuntimeError):  # a page that never settles still ends, in the caller's warning
        _load_and_capture(NavigatingPage(fail=5), "<p>x</p>", tmp_path / "p.png", deadline, RuntimeError)
    timed_out = NavigatingPage(fail=1, message="Timeout 5000ms exceeded")
    with pytest.raises(RuntimeError):  # a deadline is not retried
        _load_and_capture(timed_out, "<p>x</p>", tmp_path / "p.png", deadline, RuntimeError)
    assert timed_out.calls == ["load"]
