"""Fetch a user-supplied http(s) URL without letting it hurt the server.

Every hop (the URL and each redirect target) goes through the same gate: parse,
refuse by scheme / credentials / port / deny list, resolve once, check every
address against the ``FetchPolicy``, then connect to one of exactly those
addresses (see ``_transport`` for the pinning). Redirects are followed here,
not by httpx, so that each target meets the gate before any byte is sent to it.

The body is streamed into a bounded buffer: a declared ``Content-Length`` over
the limit is refused before reading, and a body without one is cut off as soon
as it passes the limit. One deadline covers resolving, connecting, redirects and
the whole body, so a server that drips a byte a second cannot hold a worker;
within it, each read may wait ``read_timeout`` seconds at most, and a body
slower than ``min_bytes_per_second`` on average after its first
``read_timeout`` seconds is cut off early.

Sharing: at most ``max_per_host`` fetches talk to one host (its address, so
many names for one server count together) at once, server-wide (more wait
their turn, inside their deadline), so one slow host cannot occupy the whole
connection pool. A ``FetchBudget`` caps what one request may fetch
in all: URLs (redirect hops included; 1006) and bytes (1005).

All httpx failures become ``FetchError`` in ``_translated`` and nowhere else;
messages name the URL the user gave (or the redirect target) and the reason,
never a resolved address or an exception's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType

import httpcore
import httpx

from vlserve.errors import (
    FetchError,
    FetchRefusedError,
    PayloadTooLargeError,
    RequestError,
    TooManyInputsError,
    VlserveError,
)
from vlserve.inputs._transport import PinningTransport, pinned
from vlserve.inputs.policy import (
    FetchPolicy,
    IPAddress,
    Resolver,
    check_addresses,
    check_host,
    literal_address,
    system_resolver,
)

__all__ = ["DEFAULT_USER_AGENT", "FetchBudget", "Fetched", "Fetcher", "format_bytes"]

DEFAULT_USER_AGENT = "vlserve-fetch/0.1"
MAX_URL_LENGTH = 8192
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Fetched:
    """A fetched body. ``content_type`` is the bare media type (``image/png``) as the server declared it."""

    data: bytes
    content_type: str | None
    final_url: str


class FetchBudget:
    """What one request may fetch in all: ``max_fetches`` URLs (each redirect hop counts) and
    ``max_bytes`` of bodies. Create one per request and pass it to every fetch of that request."""

    def __init__(self, max_fetches: int, max_bytes: int) -> None:
        if max_fetches < 1 or max_bytes < 1:
            raise ValueError("a fetch budget needs max_fetches >= 1 and max_bytes >= 1")
        self.max_fetches = max_fetches
        self.max_bytes = max_bytes
        self.fetches = 0
        self.bytes = 0

    def take_fetch(self) -> None:
        """Count one more URL; TooManyInputsError (1006) past ``max_fetches``."""
        if self.fetches >= self.max_fetches:
            raise TooManyInputsError(
                f"This request fetches more than {self.max_fetches} URLs (redirects included), the "
                "server's limit per request.",
                limit=self.max_fetches,
            )
        self.fetches += 1

    def take_bytes(self, count: int) -> None:
        """Count ``count`` more body bytes; PayloadTooLargeError (1005) past ``max_bytes``."""
        self.bytes += count
        if self.bytes > self.max_bytes:
            raise PayloadTooLargeError(
                f"The URLs of this request add up to more than the {format_bytes(self.max_bytes)} the server "
                "fetches per request.",
                limit=self.max_bytes,
            )


class _HostSlots:
    """At most ``limit`` fetches per host at once; the semaphores live only while in use."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(host, (asyncio.Semaphore(self.limit), 0))
        self._slots[host] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[host]
            if users <= 1:
                del self._slots[host]
            else:
                self._slots[host] = (semaphore, users - 1)


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) form, as it is resolved and sent
    port: int


def format_bytes(n: int) -> str:
    """``20971520`` -> ``'20 MiB'``: limits in messages read better in binary units."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _show(value: object, limit: int = 200) -> str:
    """Echo user input in a message: control characters masked, length bounded."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refusing_cookie_jar() -> http.cookiejar.CookieJar:
    # The client is shared by every request of every user: a cookie set by one
    # fetched site must never ride along on another user's fetch.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class Fetcher:
    """Fetches http(s) URLs under a ``FetchPolicy``; one instance per service, reused.

    ``resolver`` is the DNS boundary (inject a stub in tests); ``network_backend``
    the socket layer under the pinning (tests pass a recording one);
    ``ssl_context`` defaults to the certifi trust store.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        max_connections: int = 20,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self._resolver = resolver
        self._hosts = _HostSlots(self.policy.max_per_host)
        transport = PinningTransport(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            network_backend=network_backend,
            max_connections=max_connections,
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment may route around the pinning
            cookies=_refusing_cookie_jar(),
            timeout=httpx.Timeout(
                self.policy.total_timeout, connect=self.policy.connect_timeout, read=self.policy.read_timeout
            ),
            headers={
                "User-Agent": user_agent,
                "Accept": "*/*",
                # Ask for the bytes as stored: a compressed body would be inflated in
                # chunks far larger than what crossed the wire.
                "Accept-Encoding": "identity",
            },
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    async def fetch(self, url: str, *, max_bytes: int | None = None, budget: FetchBudget | None = None) -> Fetched:
        """GET ``url`` and return its body.

        ``max_bytes`` can only lower the policy's limit; ``budget`` is the
        request's allowance shared with its other fetches. Raises
        FetchRefusedError (policy), PayloadTooLargeError (size, budget bytes),
        TooManyInputsError (budget fetches), RequestError (not a URL) and
        FetchError (everything else: DNS, connect, TLS, HTTP status, timeouts,
        a body slower than the minimum rate).
        """
        limit = self.policy.max_bytes if max_bytes is None else min(max_bytes, self.policy.max_bytes)
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                return await self._follow(url, limit, budget)
        except TimeoutError as err:
            raise FetchError(
                f"Fetching {_show(url)} took longer than the {self.policy.total_timeout:g} s limit.", url=url
            ) from err

    async def _follow(self, url: str, limit: int, budget: FetchBudget | None) -> Fetched:
        target = self._parse(url, invalid=RequestError)
        for _hop in range(self.policy.max_redirects + 1):
            if budget is not None:
                budget.take_fetch()
            addresses = await self._vet(target)
            # Keyed by the address connected to (the first vetted one): many names for one
            # slow server share its slots.
            async with self._hosts.hold(str(addresses[0])):
                with pinned(target.host, addresses), self._translated(target):
                    request = self._client.build_request("GET", target.url)
                    response = await self._client.send(request, stream=True)
                    try:
                        location: str | None = response.headers.get("location")
                        if response.status_code not in _REDIRECT_STATUSES or location is None:
                            return await self._read(target, response, limit, budget)
                    finally:
                        await response.aclose()
            assert location is not None
            try:
                next_url = target.url.join(location)
            except httpx.InvalidURL as err:
                raise FetchError(f"{_show(target.url)} redirected to an invalid URL.", url=url) from err
            target = self._parse(next_url, invalid=FetchError)
        raise FetchError(f"{_show(url)} redirected more than {self.policy.max_redirects} times.", url=url)

    def _parse(self, url: str | httpx.URL, *, invalid: type[VlserveError]) -> _Target:
        """Validate one hop's URL; ``invalid`` is raised for URLs that are not well formed."""
        if isinstance(url, str):
            if len(url) > MAX_URL_LENGTH:
                raise invalid(f"The URL is longer than {MAX_URL_LENGTH} characters.")
            try:
                url = httpx.URL(url)
            except httpx.InvalidURL as err:
                raise invalid(f"{_show(url)} is not a valid URL.") from err
        scheme = url.scheme.lower()
        if not scheme:
            raise invalid(f"{_show(url)} is not an absolute URL; it must start with http:// or https://.")
        if scheme not in self.policy.allowed_schemes:
            allowed = " or ".join(self.policy.allowed_schemes)
            raise FetchRefusedError(
                f"Refused to fetch {_show(url)}: URL scheme '{scheme}' is not allowed; use {allowed}.",
                url=str(url),
            )
        if url.userinfo:
            raise FetchRefusedError(
                "URLs with credentials (user:password@host) are not allowed; remove them from the URL.",
            )
        host = url.raw_host.decode("ascii").lower()
        if not host:
            raise invalid(f"{_show(url)} has no host name.")
        port = url.port or _DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise invalid(f"{_show(url)} has an invalid port number.")
        if self.policy.allowed_ports is not None and port not in self.policy.allowed_ports:
            raise FetchRefusedError(
                f"Refused to fetch {_show(url)}: port {port} is not allowed.", url=str(url)
            )
        check_host(host, self.policy)
        return _Target(url=url, host=host, port=port)

    async def _vet(self, target: _Target) -> list[IPAddress]:
        """Resolve once and check every address; these are the only ones we will connect to."""
        literal = literal_address(target.host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self._resolver(target.host, target.port)
            except (OSError, UnicodeError) as err:
                raise FetchError(
                    f"Could not resolve the host '{_show(target.host)}'.", host=target.host
                ) from err
            if not addresses:
                raise FetchError(f"Could not resolve the host '{_show(target.host)}'.", host=target.host)
        check_addresses(addresses, target.host, self.policy)
        return addresses

    async def _read(
        self, target: _Target, response: httpx.Response, limit: int, budget: FetchBudget | None
    ) -> Fetched:
        shown = _show(target.url)
        status = response.status_code
        if not 200 <= status < 300:
            reason = httpx.codes.get_reason_phrase(status)
            suffix = " without a Location header" if status in _REDIRECT_STATUSES else ""
            raise FetchError(
                f"GET {shown} returned HTTP {status}{' ' + reason if reason else ''}{suffix}.",
                url=str(target.url),
                status=status,
            )
        too_large = f"{shown} is larger than the {format_bytes(limit)} limit."
        declared = response.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(too_large, url=str(target.url), limit=limit)
        declared_size = int(declared) if declared is not None and declared.strip().isdigit() else None
        if budget is not None and declared_size is not None and budget.bytes + declared_size > budget.max_bytes:
            budget.take_bytes(declared_size)  # refuses before reading, like the limit above
        body = bytearray()
        started = time.monotonic()
        grace, rate = self.policy.read_timeout, self.policy.min_bytes_per_second
        async for chunk in response.aiter_bytes():
            if len(body) + len(chunk) > limit:
                raise PayloadTooLargeError(too_large, url=str(target.url), limit=limit)
            if budget is not None:
                budget.take_bytes(len(chunk))
            body += chunk
            elapsed = time.monotonic() - started
            if rate and elapsed > grace and len(body) < rate * elapsed:
                raise FetchError(
                    f"{shown} sent its body slower than the {format_bytes(rate)}/s minimum; it was cut off.",
                    url=str(target.url),
                )
        content_type = response.headers.get("content-type")
        media_type = content_type.split(";", 1)[0].strip().lower() if content_type else ""
        return Fetched(data=bytes(body), content_type=media_type or None, final_url=str(target.url))

    @contextlib.contextmanager
    def _translated(self, target: _Target) -> Iterator[None]:
        """The one place where httpx's exceptions become ours."""
        shown = _show(target.url)
        try:
            yield
        except httpx.ConnectTimeout as err:
            raise FetchError(
                f"Could not connect to {_show(target.host)} within {self.policy.connect_timeout:g} s.",
                url=str(target.url),
            ) from err
        except httpx.ConnectError as err:
            if _caused_by(err, ssl.SSLCertVerificationError):
                message = f"The TLS certificate of {_show(target.host)} could not be verified."
            elif _caused_by(err, ssl.SSLError):
                message = f"The TLS handshake with {_show(target.host)} failed."
            else:
                message = f"Could not connect to {_show(target.host)}."
            raise FetchError(message, url=str(target.url)) from err
        except httpx.TimeoutException as err:
            raise FetchError(f"Timed out while fetching {shown}.", url=str(target.url)) from err
        except httpx.RemoteProtocolError as err:
            raise FetchError(
                f"{shown} sent an invalid or incomplete HTTP response.", url=str(target.url)
            ) from err
        except httpx.HTTPError as err:
            raise FetchError(f"Fetching {shown} failed with a network error.", url=str(target.url)) from err


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = err
    for _ in range(8):  # the chain is short; bound it anyway
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
