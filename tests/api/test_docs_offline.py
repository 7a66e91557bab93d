"""``/docs`` (Swagger UI) and ``/redoc`` render in a real headless Chromium with every request
beyond loopback blocked: their assets are served by vlserve itself, not a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import make_settings, run_server
from vlserve.api.app import create_app
from vlserve.testing import FakeEngine

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "::1", "[::1]"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from run_server(create_app(make_settings(tmp_path_factory.mktemp("docs")), engine=FakeEngine()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the 'demo' extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


def open_offline(browser: Any, address: str, ready: str) -> tuple[Any, list[str], list[str]]:
    """Load ``address`` with the network cut beyond loopback; wait for ``ready`` to be on the page."""
    context = browser.new_context()
    blocked: list[str] = []

    def guard(route: Any) -> None:
        if (urlsplit(route.request.url).hostname or "") in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(address)
    page.wait_for_selector(ready, timeout=30_000)
    return page, blocked, errors


def test_swagger_ui_renders_the_operations_offline(browser: Any, url: str) -> None:
    page, blocked, errors = open_offline(browser, url + "/docs", ".opblock")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/infer", "/infer_stream", "/jobs", "/v1/chat/completions"} <= {p.strip() for p in paths}
    assert blocked == [] and errors == []
    page.context.close()


def test_redoc_renders_the_operations_offline(browser: Any, url: str) -> None:
    page, blocked, errors = open_offline(browser, url + "/redoc", "[data-section-id^='operation/']")
    assert page.locator("[data-section-id^='operation/']").count() >= 5
    assert blocked == [] and errors == []
    page.context.close()


def test_the_pages_name_only_local_assets(url: str) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(url + page).text
        assert "/docs/assets/" in html and "cdn" not in html.lower() and "fonts.googleapis" not in html
    # ReDoc's bundle names a remote logo: the page's policy keeps the browser on this server.
    assert "default-src 'self'" in httpx.get(url + "/redoc").headers["content-security-policy"]
