"""ASGI middleware: a request id, bounds on the request body, and an end for abandoned requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.api.errors import error_headers, error_payload, status_for
from vlserve.errors import OverloadedError, PayloadTooLargeError, RequestTimeoutError, VlserveError


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


class RequestContext:
    """Assigns ``request.state.request_id`` (echoed as ``X-Request-ID``), bounds the body and
    stops work whose client went away.

    - A body larger than ``max_body_bytes`` is refused with code 1005, by Content-Length up front
      or while it streams in.
    - The body must arrive within ``body_timeout`` seconds plus one second per ``body_min_rate``
      bytes received (the rule of Apache's mod_reqtimeout): a client trickling bytes gets 408
      (code 4008) and the connection is closed.
    - Once the whole body is read, the receive channel is watched: when the client disconnects
      before its response is complete, the request's task is cancelled, which stops its generation
      (the engine frees the row at its next step). Streams end the same way on their own.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float = 10.0,
                 body_min_rate: int = 16 * 1024, max_inflight_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight_body_bytes
        self.inflight = 0  # body bytes held by all requests in flight
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        too_large = PayloadTooLargeError(f"the request body is larger than {self.max_body_bytes} bytes")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._reject(send, request_id, too_large, scope["path"])
            return
        busy = OverloadedError("the server holds too many request bodies right now; retry shortly",
                               retry_after=2.0)
        if length is not None and length.isdigit() and not self._room(int(length)):
            await self._reject(send, request_id, busy, scope["path"])
            return

        loop = asyncio.get_running_loop()
        received = 0
        deadline: float | None = None
        body_read = asyncio.Event()
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, deadline
            if body_read.is_set():
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.body_timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                # FastAPI wraps it while reading the body; vlserve.api.errors unwraps it to 4008.
                raise RequestTimeoutError(
                    f"the request body arrived too slowly (allowed: {self.body_timeout:g} s plus 1 s per "
                    f"{self.body_min_rate} bytes)") from None
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                if not self._room(chunk):
                    raise busy  # FastAPI wraps it; vlserve.api.errors unwraps it to 2001
                self.inflight += chunk
                received += chunk
                deadline += chunk / self.body_min_rate
                if received > self.max_body_bytes:
                    raise too_large  # FastAPI wraps it; vlserve.api.errors unwraps it to 1005
                if not message.get("more_body", False):
                    body_read.set()
            else:
                body_read.set()  # disconnected: nothing more will come
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True
            await send(message)

        async def watch_disconnect() -> None:
            await body_read.wait()
            while not responded:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        handler = asyncio.ensure_future(self.app(scope, limited_receive, send_with_id))
        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and not responded:
                handler.cancel()  # the client left: stop its work (nobody is there to answer)
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
                return
            await handler
        finally:
            for task in (handler, watcher):
                if not task.done():
                    task.cancel()
            await asyncio.gather(handler, watcher, return_exceptions=True)
            self.inflight -= received

    def _room(self, incoming: int) -> bool:
        return self.max_inflight is None or self.inflight + incoming <= self.max_inflight

    @staticmethod
    async def _reject(send: Send, request_id: str, err: VlserveError, path: str) -> None:
        body = json.dumps(error_payload(err, request_id, path)).encode()
        headers: list[Any] = [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                              (b"content-length", str(len(body)).encode()),
                              *((k.lower().encode(), v.encode()) for k, v in error_headers(err).items())]
        await send({"type": "http.response.start", "status": status_for(err), "headers": headers})
        await send({"type": "http.response.body", "body": body})


class KeyRequired:
    """Paths outside the API routes that need a valid key too (the docs, the metrics), when the
    server has keys; the answer for a missing or wrong key is the usual 401 (or 4029)."""

    def __init__(self, app: ASGIApp, keyring: Any, paths: tuple[str, ...]) -> None:
        self.app = app
        self.keyring = keyring
        self.paths = paths

    def _protected(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keyring.enabled and self._protected(scope["path"]):
            from vlserve.api.errors import error_response
            from vlserve.errors import VlserveError

            authorization = dict(scope.get("headers") or []).get(b"authorization")
            client = scope.get("client")
            try:
                await self.keyring.authenticate(authorization.decode("latin-1") if authorization else None,
                                          client[0] if client else None)
            except VlserveError as err:
                request_id = scope.get("state", {}).get("request_id", "req_unknown")
                await error_response(err, request_id, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)
