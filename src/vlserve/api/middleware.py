"""ASGI middleware: a request id on every request and a cap on request body size."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.api.errors import error_body
from vlserve.errors import PayloadTooLargeError


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


class RequestContext:
    """Assigns ``request.state.request_id`` (echoed as ``X-Request-ID``) and refuses bodies larger
    than ``max_body_bytes`` with code 1005 — by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
            await self._reject(send, request_id, too_large)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large  # FastAPI wraps it; vlserve.api.errors unwraps it to 1005
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, limited_receive, send_with_id)

    @staticmethod
    async def _reject(send: Send, request_id: str, err: PayloadTooLargeError) -> None:
        body = json.dumps(error_body(err, request_id)).encode()
        headers: list[Any] = [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                              (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
