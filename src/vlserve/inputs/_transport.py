"""An httpx transport that connects only to addresses the fetch policy vetted.

Why: checking a URL's addresses and then letting the HTTP client resolve the
name again leaves a window (DNS rebinding): a name can answer the check with a
public address and the connect with ``127.0.0.1``. So the resolution used for
the check is the *only* resolution. The fetcher publishes the vetted addresses
of the host it is about to request in a context variable (``pinned``); this
module's network backend reads them in ``connect_tcp`` and opens the socket to
those IPs, never looking the name up itself. A host with no vetted address is
refused, so a bug elsewhere fails closed.

Pinning happens below HTTP and TLS on purpose: httpcore calls
``connect_tcp(host, port)`` with the URL's host and then ``start_tls`` with
``server_hostname`` set to that same host. Swapping only the socket's
destination therefore keeps the ``Host`` header, the TLS SNI and certificate
verification all on the real host name, which rewriting the URL to an IP
would break.

A context variable (not a dict on the backend) scopes the pins to the task
doing the request: httpcore opens new connections in the requesting task, and
concurrent fetches of the same name with different answers cannot see each
other's pins. A pooled keep-alive connection was pinned when it was opened, so
reusing it is also safe.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence

import httpcore
import httpx

from vlserve.errors import FetchRefusedError
from vlserve.inputs.policy import IPAddress

__all__ = ["PinningTransport", "pinned"]

_PINS: contextvars.ContextVar[Mapping[str, tuple[IPAddress, ...]] | None] = contextvars.ContextVar(
    "vlserve_inputs_pins", default=None
)


def _key(host: str) -> str:
    return host.lower().strip("[]").rstrip(".")


@contextlib.contextmanager
def pinned(host: str, addresses: Sequence[IPAddress]) -> Iterator[None]:
    """Within this block, connections to ``host`` go to ``addresses`` (in order) only."""
    token = _PINS.set({_key(host): tuple(addresses)})
    try:
        yield
    finally:
        _PINS.reset(token)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Replaces the host name of every TCP connect with its vetted addresses."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pins = _PINS.get()
        addresses = pins.get(_key(host)) if pins else None
        if not addresses:
            raise FetchRefusedError("The connection was refused because its address had not been checked.")
        last_error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                last_error = err  # like a browser: try the next record before giving up
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefusedError("Unix sockets are never fetched from.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore -> httpx, subclasses before their bases, so callers see only httpx's tree.
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as err:
        for core_type, httpx_type in _ERROR_MAP:
            if isinstance(err, core_type):
                raise httpx_type(str(err), request=request) from err
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpx_errors(self._request):
                await close()


class PinningTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 connection pool whose sockets only reach pinned addresses.

    ``network_backend`` is the real socket layer (tests pass one that records
    connects); it is always wrapped, so it only ever sees IP addresses.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        max_connections: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(network_backend or httpcore.AnyIOBackend()),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            core_response = await self._pool.handle_async_request(core_request)
        stream = core_response.stream
        assert isinstance(stream, AsyncIterable)  # the async pool always returns an async stream
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(stream, request),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
