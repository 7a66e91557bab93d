"""The Fetcher against a real loopback HTTP(S) server; DNS is a stub, sockets go through GuardBackend."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tests.inputs.helpers import (
    PNG_BODY,
    GuardBackend,
    LoopbackServer,
    RebindingResolver,
    StubResolver,
    TlsSetup,
    closed_loopback_port,
)
from vlserve.errors import FetchError, FetchRefusedError, PayloadTooLargeError, RequestError
from vlserve.inputs import Fetcher, FetchPolicy

T = TypeVar("T")
LOOPBACK_ALLOWED = FetchPolicy(allow_hosts=("127.0.0.1",))


def run_fetcher(
    policy: FetchPolicy,
    use: Callable[[Fetcher], Awaitable[T]],
    *,
    resolver: StubResolver | None = None,
    backend: GuardBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> T:
    """Run ``use(fetcher)`` on a fresh event loop with a fetcher that cannot leave loopback."""

    async def main() -> T:
        async with Fetcher(
            policy,
            resolver=resolver or StubResolver(),
            network_backend=backend or GuardBackend(),
            ssl_context=ssl_context,
        ) as fetcher:
            return await use(fetcher)

    return asyncio.run(main())


# --- policy decided before any socket is opened ------------------------------------------------------


def test_loopback_url_is_refused_by_default_without_connecting(server: LoopbackServer) -> None:
    backend = GuardBackend()
    with pytest.raises(FetchRefusedError, match="loopback"):
        run_fetcher(FetchPolicy(), lambda f: f.fetch(server.url("/image")), backend=backend)
    assert backend.connects == []


def test_loopback_url_is_fetched_once_allow_listed(server: LoopbackServer) -> None:
    backend = GuardBackend()
    fetched = run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/image")), backend=backend)
    assert fetched.data == PNG_BODY
    assert fetched.content_type == "image/png"
    assert fetched.final_url == server.url("/image")
    assert backend.connects == [("127.0.0.1", server.port)]


def test_name_resolving_to_private_address_is_refused_before_connect() -> None:
    resolver = StubResolver({"evil.example": ["10.0.0.5"]})
    backend = GuardBackend()
    with pytest.raises(
        FetchRefusedError, match="'evil.example' resolves to a private network address"
    ) as info:
        run_fetcher(
            FetchPolicy(), lambda f: f.fetch("http://evil.example/x.png"), resolver=resolver, backend=backend
        )
    assert "10.0.0.5" not in info.value.message
    assert resolver.calls == ["evil.example"]
    assert backend.connects == []


def test_name_with_one_public_and_one_private_record_is_refused() -> None:
    resolver = StubResolver({"mixed.example": ["93.184.216.34", "192.168.0.7"]})
    backend = GuardBackend()
    with pytest.raises(FetchRefusedError):
        run_fetcher(
            FetchPolicy(), lambda f: f.fetch("http://mixed.example/"), resolver=resolver, backend=backend
        )
    assert backend.connects == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://0.0.0.0/",
    ],
)
def test_internal_ip_literals_are_refused_without_dns_or_connect(url: str) -> None:
    resolver, backend = StubResolver(), GuardBackend()
    with pytest.raises(FetchRefusedError):
        run_fetcher(FetchPolicy(), lambda f: f.fetch(url), resolver=resolver, backend=backend)
    assert resolver.calls == []
    assert backend.connects == []


def test_public_address_is_connected_to_by_ip_not_by_name() -> None:
    # The guard refuses the (non-loopback) connect, so nothing leaves the machine; what matters is
    # that the policy let it through and that the socket layer was handed the vetted IP.
    resolver = StubResolver({"public.example": ["93.184.216.34"]})
    backend = GuardBackend()
    with pytest.raises(FetchError, match="Could not connect to public.example"):
        run_fetcher(
            FetchPolicy(),
            lambda f: f.fetch("http://public.example/cat.jpg"),
            resolver=resolver,
            backend=backend,
        )
    assert backend.connects == [("93.184.216.34", 80)]


def test_dns_is_consulted_once_so_a_rebinding_answer_is_never_used() -> None:
    resolver = RebindingResolver(first="93.184.216.34", then="127.0.0.1")
    backend = GuardBackend()
    with pytest.raises(FetchError):
        run_fetcher(
            FetchPolicy(), lambda f: f.fetch("http://rebind.example/"), resolver=resolver, backend=backend
        )
    assert resolver.calls == ["rebind.example"]
    assert backend.connects == [("93.184.216.34", 80)]


def test_host_name_is_pinned_to_its_vetted_ip_and_keeps_its_host_header(server: LoopbackServer) -> None:
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    backend = GuardBackend()
    fetched = run_fetcher(
        FetchPolicy(allow_hosts=("images.test",)),
        lambda f: f.fetch(server.url("/host", host="images.test")),
        resolver=resolver,
        backend=backend,
    )
    assert fetched.data == f"images.test:{server.port}".encode()
    assert backend.connects == [("127.0.0.1", server.port)]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "gopher://example.com/", "file:///etc/passwd", "javascript:alert(1)"]
)
def test_non_http_schemes_are_refused(url: str) -> None:
    resolver, backend = StubResolver(), GuardBackend()
    with pytest.raises(FetchRefusedError, match="scheme"):
        run_fetcher(FetchPolicy(), lambda f: f.fetch(url), resolver=resolver, backend=backend)
    assert resolver.calls == [] and backend.connects == []


def test_https_only_policy_refuses_http(server: LoopbackServer) -> None:
    policy = FetchPolicy(allowed_schemes=("https",), allow_hosts=("127.0.0.1",))
    with pytest.raises(FetchRefusedError, match="use https"):
        run_fetcher(policy, lambda f: f.fetch(server.url("/image")))


def test_credentials_in_url_are_refused(server: LoopbackServer) -> None:
    backend = GuardBackend()
    url = f"http://user:pass@127.0.0.1:{server.port}/image"
    with pytest.raises(FetchRefusedError, match="credentials") as info:
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(url), backend=backend)
    assert "pass" not in info.value.message.replace("password", "")
    assert backend.connects == []


def test_ports_outside_the_allowed_set_are_refused(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), allowed_ports=(80, 443))
    with pytest.raises(FetchRefusedError, match=f"port {server.port}"):
        run_fetcher(policy, lambda f: f.fetch(server.url("/image")))


def test_denied_host_name_is_refused_without_a_dns_lookup() -> None:
    resolver = StubResolver({"ads.example": ["93.184.216.34"]})
    with pytest.raises(FetchRefusedError, match="blocked"):
        run_fetcher(
            FetchPolicy(deny_hosts=("ads.example",)),
            lambda f: f.fetch("http://ads.example/"),
            resolver=resolver,
        )
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url", ["http://", "http:///path", "not a url at all", "http://[::1", "http://a:99999/"]
)
def test_malformed_urls_are_request_errors(url: str) -> None:
    with pytest.raises(RequestError):
        run_fetcher(FetchPolicy(), lambda f: f.fetch(url))


def test_unresolvable_name_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="Could not resolve the host 'nowhere.example'"):
        run_fetcher(FetchPolicy(), lambda f: f.fetch("http://nowhere.example/"))


def test_name_without_addresses_is_a_fetch_error() -> None:
    resolver = StubResolver({"empty.example": []})
    with pytest.raises(FetchError, match="Could not resolve the host 'empty.example'"):
        run_fetcher(FetchPolicy(), lambda f: f.fetch("http://empty.example/"), resolver=resolver)


def test_connection_refused_is_a_fetch_error() -> None:
    url = f"http://127.0.0.1:{closed_loopback_port()}/"
    with pytest.raises(FetchError, match="Could not connect to 127.0.0.1"):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(url))


# --- redirects -----------------------------------------------------------------------------------------


def test_redirect_chain_within_the_limit_is_followed(server: LoopbackServer) -> None:
    fetched = run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/redirect/3")))
    assert fetched.data == PNG_BODY
    assert fetched.final_url == server.url("/image")


def test_too_many_redirects_is_a_fetch_error(server: LoopbackServer) -> None:
    with pytest.raises(FetchError, match="redirected more than 3 times"):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/redirect/4")))
    with pytest.raises(FetchError, match="redirected more than 0 times"):
        run_fetcher(
            FetchPolicy(allow_hosts=("127.0.0.1",), max_redirects=0),
            lambda f: f.fetch(server.url("/redirect/1")),
        )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("http://internal.example/secret", "'internal.example' resolves to a private network address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("ftp://example.com/a.png", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://user:pw@example.com/", "credentials"),
    ],
)
def test_redirect_from_allowed_to_refused_is_refused_before_connecting(
    server: LoopbackServer, target: str, match: str
) -> None:
    resolver = StubResolver({"internal.example": ["10.1.2.3"]})
    backend = GuardBackend()
    url = server.url("/to?url=" + urllib.parse.quote(target, safe=""))
    with pytest.raises(FetchRefusedError, match=match):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(url), resolver=resolver, backend=backend)
    assert backend.connects == [("127.0.0.1", server.port)]  # only the first, allowed hop


def test_redirect_without_location_is_a_fetch_error(server: LoopbackServer) -> None:
    with pytest.raises(FetchError, match="HTTP 302 Found without a Location"):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/no-location")))


# --- responses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error"), (403, "Forbidden")]
)
def test_http_error_status_is_a_fetch_error_naming_the_status(
    server: LoopbackServer, status: int, reason: str
) -> None:
    url = server.url(f"/status/{status}")
    with pytest.raises(FetchError) as info:
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(url))
    assert info.value.message == f"GET {url} returned HTTP {status} {reason}."
    assert info.value.details["status"] == status
    assert info.value.code == 1007


def test_declared_content_length_over_the_limit_is_refused_before_reading(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=1000)
    with pytest.raises(PayloadTooLargeError, match="larger than the 1000 bytes limit") as info:
        run_fetcher(policy, lambda f: f.fetch(server.url("/bytes?n=50000000")))
    assert info.value.code == 1005


def test_streamed_body_is_cut_off_at_the_limit(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=100_000)
    with pytest.raises(PayloadTooLargeError, match="97.7 KiB"):
        run_fetcher(policy, lambda f: f.fetch(server.url("/stream?n=5000000")))
    fetched = run_fetcher(policy, lambda f: f.fetch(server.url("/stream?n=100000")))
    assert len(fetched.data) == 100_000
    assert fetched.content_type is None  # the route sends no Content-Type


def test_per_call_max_bytes_lowers_the_limit(server: LoopbackServer) -> None:
    with pytest.raises(PayloadTooLargeError):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/image"), max_bytes=10))


def test_content_length_lie_is_a_fetch_error(server: LoopbackServer) -> None:
    with pytest.raises(FetchError, match="incomplete HTTP response"):
        run_fetcher(LOOPBACK_ALLOWED, lambda f: f.fetch(server.url("/lie")))


def test_slow_drip_body_is_cut_off_by_the_total_timeout(server: LoopbackServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), total_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than the 0.5 s limit"):
        run_fetcher(policy, lambda f: f.fetch(server.url("/drip")))
    assert time.monotonic() - started < 3


def test_cookies_set_by_one_fetch_are_not_sent_on_the_next(server: LoopbackServer) -> None:
    async def use(fetcher: Fetcher) -> bytes:
        await fetcher.fetch(server.url("/set-cookie"))
        return (await fetcher.fetch(server.url("/cookie"))).data

    assert run_fetcher(LOOPBACK_ALLOWED, use) == b""


def test_one_fetcher_serves_concurrent_fetches(server: LoopbackServer) -> None:
    async def use(fetcher: Fetcher) -> list[bytes]:
        results = await asyncio.gather(*(fetcher.fetch(server.url("/image")) for _ in range(8)))
        return [r.data for r in results]

    assert run_fetcher(LOOPBACK_ALLOWED, use) == [PNG_BODY] * 8


# --- TLS: pinned socket, verified host name ---------------------------------------------------------------


def test_https_to_pinned_ip_verifies_the_certificate_against_the_host_name(tls: TlsSetup) -> None:
    resolver = StubResolver({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    backend = GuardBackend()
    fetched = run_fetcher(
        LOOPBACK_ALLOWED,
        lambda f: f.fetch(tls.server.url("/host", host="images.test")),
        resolver=resolver,
        backend=backend,
        ssl_context=tls.client_context,
    )
    assert fetched.data == f"images.test:{tls.server.port}".encode()
    assert backend.connects == [("127.0.0.1", tls.server.port)]
    # Same socket destination, but the certificate is not for other.test: verification must fail.
    with pytest.raises(FetchError, match="TLS certificate of other.test could not be verified"):
        run_fetcher(
            LOOPBACK_ALLOWED,
            lambda f: f.fetch(tls.server.url("/host", host="other.test")),
            resolver=resolver,
            ssl_context=tls.client_context,
        )
