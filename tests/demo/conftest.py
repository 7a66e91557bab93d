"""A real vlserve server with the tiny model, the demo app in front of it, and Debian's chromium
driven by Playwright with its network restricted to loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.demo.helpers import CHROMIUM, KEY, run_server, server_settings

LOOPBACK = {"127.0.0.1", "::1", "[::1]"}


@pytest.fixture(scope="session")
def vl_server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dense tiny model, no authentication, jobs on SQLite."""
    from vlserve.api.app import create_app

    tmp = tmp_path_factory.mktemp("demo-server")
    yield from run_server(create_app(server_settings(tmp), engine=engine))


@pytest.fixture(scope="session")
def keyed_server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same model behind one API key (``helpers.KEY``)."""
    from vlserve.api.app import create_app
    from vlserve.service.auth import hash_key

    tmp = tmp_path_factory.mktemp("keyed")
    settings = server_settings(tmp, auth={"keys": [{"id": "demo", "sha256": hash_key(KEY)}]})
    yield from run_server(create_app(settings, engine=engine))


@pytest.fixture(scope="session")
def demo_url(vl_server: str) -> Iterator[str]:
    from vlserve.demo import create_demo_app

    yield from run_server(create_demo_app(vl_server))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: while Playwright's sync API is started, its event loop counts as
    # running in this thread, and every later test that calls asyncio.run() would fail.
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the 'demo' extra)")
    with sync_api.sync_playwright() as playwright:
        # SwiftShader gives headless chromium WebGL with no GPU, for the 3D viewer.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--enable-unsafe-swiftshader", "--use-angle=swiftshader"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose every request to anything but loopback is aborted and recorded: after the
    test, ``page.leaks`` must be empty (the demo works offline). Script errors fail the test too."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True, locale="en-US")
    leaks: list[str] = []

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK:
            route.continue_()
        else:
            leaks.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not leaks, f"the page tried to reach beyond loopback: {leaks}"
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def shots() -> Path | None:
    """Where to save documentation screenshots: set by scripts/demo_screenshots.py, else nowhere."""
    where = os.environ.get("VLSERVE_DEMO_SCREENSHOTS")
    return Path(where) if where else None
