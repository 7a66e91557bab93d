"""The FastAPI application object, with API docs that work offline.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so it is blank on a machine without
internet. The assets come from the ``fastapi-offline`` package instead and are served by this
server under ``/docs/assets``: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc, without Google
fonts) need no other host. ReDoc's bundle still names one remote image (a logo); the ReDoc
page's Content-Security-Policy keeps the browser on this server, so no request leaves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

ASSETS_URL = "/docs/assets"
# Everything from this server only; ReDoc styles itself inline and may search in a blob: worker.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'")


def make_app(*, expose_docs: bool, **kwargs: Any) -> FastAPI:
    """``FastAPI(**kwargs)`` with ``/docs``, ``/redoc`` and ``/openapi.json`` when ``expose_docs``."""
    if not expose_docs:
        return FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **kwargs)
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(docs_url="/docs", redoc_url=None, static_url=ASSETS_URL, openapi_url="/openapi.json",
                         **kwargs)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    return app
