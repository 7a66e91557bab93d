"""Render a model's HTML to a PNG in headless chromium, treating the page as hostile.

The HTML comes from a model that read a caller's picture, so the caller chooses it. Rendering must
not become a way to reach the network or this machine's files, nor to hold the server:

- scripts are off (no ``fetch``, WebSocket, WebRTC, timers), and service workers are blocked;
- every request the page makes is answered by our route handler, which lets through only
  ``data:`` and ``about:blank`` and aborts the rest (http(s), file:, ftp:, ...), recording each;
- in case something bypasses the route (a preconnect, a DNS prefetch), the browser also runs
  "offline", resolves no host name (``--host-resolver-rules``) and sends any connection to a
  closed loopback port through a proxy that covers loopback too;
- the viewport is fixed and only it is captured; browser start, layout and screenshot share one
  deadline; a fresh browser per page, closed in ``finally``; at most ``max_concurrent`` at once.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.config import Rendering

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
_ALLOWED = ("data:", "about:blank")
_ATTEMPTS = 3  # loading and capturing a page that navigates on its own (see _load_and_capture)
#: Where the proxy of last resort points: loopback, a port nothing should listen on (discard).
_DEAD_PROXY = "http://127.0.0.1:9"
_HARDENING = [
    f"--proxy-server={_DEAD_PROXY}",
    "--proxy-bypass-list=<-loopback>",  # loopback goes through the (dead) proxy too
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves, so nothing is looked up either
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-pings",
    "--no-first-run",
    "--disable-extensions",
    "--disable-gpu",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@dataclass
class Rendered:
    """What came of one render: the PNG (None when none was made) and why not, if so."""

    path: Path | None
    width: int
    height: int
    blocked: list[str] = field(default_factory=list)  # URLs the page asked for and did not get
    warnings: list[str] = field(default_factory=list)


def find_chromium(configured: Path | None) -> Path | None:
    if configured is not None:
        return configured if configured.exists() else None
    if DEFAULT_CHROMIUM.exists():
        return DEFAULT_CHROMIUM
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def render_png(html: str, out: Path, settings: Rendering) -> Rendered:
    """Render ``html`` in a ``settings.width`` × ``settings.height`` viewport to ``out``.
    Never raises for the page's sake: a page that cannot be rendered in time gives warnings."""
    result = Rendered(None, settings.width, settings.height)
    if not settings.enabled:
        result.warnings.append("rendering is turned off on this server (rendering.enabled)")
        return result
    chromium = find_chromium(settings.chromium)
    if chromium is None:
        result.warnings.append("no picture: chromium is not installed on this server (rendering.chromium)")
        return result
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        result.warnings.append("no picture: the server lacks playwright (pip install 'vlserve[demo]')")
        return result
    deadline = time.monotonic() + settings.timeout_seconds
    slot = _slot(settings.max_concurrent)
    if not slot.acquire(timeout=settings.timeout_seconds):
        result.warnings.append(f"no picture: the renderer stayed busy for {settings.timeout_seconds:g} s")
        return result
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=_HARDENING,
                                                 timeout=_ms_left(deadline), handle_sigint=False,
                                                 handle_sigterm=False, handle_sighup=False)
            try:
                context = browser.new_context(
                    viewport={"width": settings.width, "height": settings.height}, java_script_enabled=False,
                    offline=True, service_workers="block", accept_downloads=False)
                context.route("**/*", lambda route: _guard(route, result.blocked))
                page = context.new_page()
                out.parent.mkdir(parents=True, exist_ok=True)
                _load_and_capture(page, html, out, deadline, PlaywrightError)
                result.path = out
            finally:
                browser.close()
    except PlaywrightError as err:
        reason = "it took longer than" if "Timeout" in str(err) else "the browser failed within"
        result.warnings.append(f"no picture: {reason} {settings.timeout_seconds:g} s (rendering.timeout_seconds)")
        out.unlink(missing_ok=True)
    finally:
        slot.release()
    if result.blocked:
        result.warnings.append(f"the page asked for {len(result.blocked)} outside resource(s); none were loaded")
    return result


def _load_and_capture(page: Any, html: str, out: Path, deadline: float, error: type[Exception]) -> None:
    """Load ``html`` and capture the viewport. A page may navigate on its own while it loads or
    while it is captured (a meta refresh, even one the guard then blocks): the document being
    replaced fails that step, which is then retried on what the page shows once it has loaded,
    a few times within the deadline. Time-outs are not retried."""
    for attempt in range(_ATTEMPTS):
        try:
            if attempt == 0:
                page.set_content(html, wait_until="load", timeout=_ms_left(deadline))
            else:
                page.wait_for_load_state("load", timeout=_ms_left(deadline))
            page.screenshot(path=str(out), full_page=False, animations="disabled", timeout=_ms_left(deadline))
            return
        except error as err:
            if "Timeout" in str(err) or attempt == _ATTEMPTS - 1:
                raise


def _guard(route: Any, blocked: list[str]) -> None:
    url = route.request.url
    if url.lower().startswith(_ALLOWED):
        route.continue_()
        return
    if len(blocked) < 100:
        blocked.append(url[:300])
    route.abort("blockedbyclient")


def _ms_left(deadline: float) -> float:
    # Playwright treats 0 as "no timeout": never pass it.
    return max(1.0, (deadline - time.monotonic()) * 1000.0)


def _slot(size: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        if size not in _slots:
            _slots[size] = threading.BoundedSemaphore(size)
        return _slots[size]
