"""The demo's own small web app: the static page plus a pass-through to a vlserve server.

The browser talks only to this app (same origin, so no CORS and no key in the page unless the
user types one): ``/`` serves the page, ``/config.json`` tells the page where the API is, and
``/api/<path>`` forwards the allowed API paths to ``server`` byte for byte, streaming both ways
(the answer of ``/infer_stream`` reaches the browser token by token). The server enforces every
limit; this app only adds the API key, if it was given one and the browser sent none.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vlserve.demo.assets import STATIC_DIR

# Only the task API's public paths are forwarded: the demo is not an open proxy to the server.
FORWARDED = re.compile(
    r"^(tasks|infer|infer_stream|healthz|readyz|openapi\.json|jobs(/[A-Za-z0-9_-]+(/events)?)?"
    r"|artifacts/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|recon3d/build)$"
)
# Set on the demo's own answer when the server cannot be reached (the page shows "unreachable").
UNREACHABLE_HEADER = "X-Vlserve-Demo-Unreachable"
# Hop-by-hop and length headers are the transport's business, not the message's.
_DROP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
         "proxy-authorization", "proxy-connection", "content-length", "content-encoding", "accept-encoding"}


def create_demo_app(server: str, api_key: str | None = None, *, timeout: float = 300.0) -> Starlette:
    """The demo app for the vlserve server at ``server`` (``http://host:port``).

    ``timeout`` bounds each read from the server (a long video answer may take minutes to start).
    """
    base = server.rstrip("/")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(timeout, connect=10.0)) as client:
            app.state.client = client
            yield

    async def config(request: Request) -> JSONResponse:
        return JSONResponse({"api": "api/", "server": base, "key_configured": api_key is not None})

    async def forward(request: Request) -> Response:
        path = request.path_params["path"]
        if not FORWARDED.match(path):
            return JSONResponse({"request_id": "", "code": 4040, "msg": f"the demo does not forward /{path}",
                                 "result": None}, status_code=404)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        if api_key and "authorization" not in headers:
            headers["authorization"] = f"Bearer {api_key}"
        client: httpx.AsyncClient = request.app.state.client
        body = request.stream() if request.method == "POST" else None  # streamed through, never held whole
        upstream = client.build_request(request.method, "/" + path, params=request.query_params,
                                        headers=headers, content=body)
        try:
            reply = await client.send(upstream, stream=True)
        except httpx.HTTPError as err:
            return _unreachable(base, err)
        out_headers = {k: v for k, v in reply.headers.items() if k.lower() not in _DROP}
        return StreamingResponse(reply.aiter_raw(), status_code=reply.status_code, headers=out_headers,
                                 background=BackgroundTask(reply.aclose))

    return Starlette(
        routes=[
            Route("/config.json", config),
            Route("/api/{path:path}", forward, methods=["GET", "POST", "DELETE"]),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
        ],
        lifespan=lifespan,
    )


def _unreachable(base: str, err: Exception) -> JSONResponse:
    # 2001 is what the page already explains as "busy or starting: retry"; the message says which.
    body: dict[str, Any] = {"request_id": "", "code": 2001, "result": None,
                            "msg": f"the vlserve server at {base} cannot be reached ({type(err).__name__})"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5", UNREACHABLE_HEADER: "1"})
