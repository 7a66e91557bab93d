"""Connection hygiene below the ASGI app: request heads must arrive in time and within a size.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but nothing else: a client
that opens a connection and sends one header byte a second holds it forever, and the httptools
parser buffers headers without a cap. :func:`protocol_class` returns uvicorn's HTTP protocol
(httptools when installed, else h11) with a guard around the request head:

- ``http.header_timeout``: from a connection's opening, or from the first byte of a later request
  on it, the whole request head must arrive within this many seconds; otherwise the server
  answers 408 (code 4008) and closes the connection.
- ``http.max_header_bytes``: a request head still incomplete after this many bytes is answered
  with 431 (code 4031) and the connection closed.

The body is bounded in the ASGI layer (:mod:`vlserve.api.middleware`), where the app reads it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vlserve.api.errors import error_body, status_for
from vlserve.api.middleware import new_request_id
from vlserve.config import Http, Settings
from vlserve.errors import HeadersTooLargeError, RequestTimeoutError, VlserveError


def _base_protocol() -> type[asyncio.Protocol]:
    # The same choice as uvicorn's "auto": httptools when it is installed.
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol


def protocol_class(http: Http, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the request-head guard of ``http`` (pass it as ``http=``)."""
    parent: Any = base or _base_protocol()

    class GuardedHTTP(parent):
        _head_timeout = http.header_timeout
        _head_limit = http.max_header_bytes
        # httptools reports where each message begins and where its head ends (also for a request
        # pipelined behind one still running); with h11 a new request cycle marks a complete head.
        _tracks_messages = hasattr(parent, "on_message_begin")

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._head_bytes = 0
            self._awaiting_head = True
            self._head_timer: asyncio.TimerHandle | None = None
            self._arm_head_timer()  # a connection that never sends a byte is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._awaiting_head:
                self._head_bytes += len(data)
                if self._head_timer is None:
                    self._arm_head_timer()
            before = self.cycle
            super().data_received(data)
            if not self._tracks_messages and self.cycle is not before:
                self._head_done()  # h11 made a new request cycle: its head is complete
            if not self._awaiting_head or self.transport.is_closing():
                return
            if self._head_timer is None:
                self._arm_head_timer()  # a head that began inside this chunk
            if self._head_bytes > self._head_limit:
                self._refuse(HeadersTooLargeError(
                    f"the request line and headers are larger than {self._head_limit} bytes"))

        if _tracks_messages:

            def on_message_begin(self) -> None:
                super().on_message_begin()
                if not self._awaiting_head:  # a request pipelined behind a running one
                    self._awaiting_head = True
                    self._head_bytes = 0

            def on_headers_complete(self) -> None:
                super().on_headers_complete()
                self._head_done()

        def on_response_complete(self) -> None:
            if not self._awaiting_head:
                self._awaiting_head = True
                self._head_bytes = 0
            super().on_response_complete()
            if self.cycle is not None and not self.cycle.response_complete:
                self._head_done()  # a pipelined request was already read and now runs

        def _head_done(self) -> None:
            self._awaiting_head = False
            self._head_bytes = 0
            self._disarm_head_timer()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._awaiting_head or self.transport.is_closing():
                return
            if self._head_bytes == 0:
                self.transport.close()  # nothing was asked: nothing to answer
                return
            self._refuse(RequestTimeoutError(
                f"the request head did not arrive within {self._head_timeout:g} seconds"))

        def _refuse(self, err: VlserveError) -> None:
            """Answer with the error envelope and close: the rest of the request is never read."""
            self._disarm_head_timer()
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # an earlier request is still answering: no room for ours
                return
            body = json.dumps(error_body(err, new_request_id())).encode()
            status = status_for(err)
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
            self.transport.close()

    GuardedHTTP.__name__ = GuardedHTTP.__qualname__ = f"Guarded{parent.__name__}"
    return GuardedHTTP


_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
_MAX_READ = 256 * 1024  # the most bytes asyncio hands a protocol in one data_received call


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments that apply ``settings.http``."""
    http = settings.http
    return {
        "http": protocol_class(http),
        "timeout_keep_alive": http.keepalive_timeout,
        # h11's own cap (a 400 without our envelope) sits one socket read above the guard's, so that
        # the guard answers first, with 431 and code 4031, whichever parser runs.
        "h11_max_incomplete_event_size": http.max_header_bytes + _MAX_READ,
    }
