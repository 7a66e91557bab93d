"""Test doubles at the true external boundaries (DNS, sockets) and sample-file makers.

``GuardBackend`` is the socket layer handed to the Fetcher: it records every
connect and refuses any destination that is not a loopback IP, so even a
regression in the code under test cannot send a packet off this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
from PIL import Image

from vlserve.inputs import IPAddress
from vlserve.testing.hostile import slow_pdf


class StubResolver:
    """DNS stand-in: a fixed name -> addresses table; unknown names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, Sequence[str]] | None = None) -> None:
        self.table = {name: [ipaddress.ip_address(a) for a in addrs] for name, addrs in (table or {}).items()}
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "stub resolver: unknown name")
        return list(self.table[host])


class RebindingResolver(StubResolver):
    """Answers the first lookup of each name with ``first`` and every later one with ``then``."""

    def __init__(self, first: str, then: str) -> None:
        super().__init__()
        self.first = ipaddress.ip_address(first)
        self.then = ipaddress.ip_address(then)

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return [self.first if self.calls.count(host) == 1 else self.then]


class GuardBackend(httpcore.AsyncNetworkBackend):
    """Records connects; lets only loopback IPs through to a real socket."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a host *name* here would mean the pinning was bypassed
        if not loopback:
            raise httpcore.ConnectError(f"test guard: refusing to leave loopback ({host})")
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("test guard: no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def make_png(size: tuple[int, int] = (8, 6), color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def encode(fmt: str, size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "blue").save(buf, fmt)
    return buf.getvalue()


def make_pdf(sizes: Sequence[tuple[int, int]]) -> bytes:
    """A PDF whose pages measure ``sizes`` in points (Pillow writes 1 px = 1 pt at 72 dpi)."""
    images = [Image.new("RGB", size, "white") for size in sizes]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=72.0)
    return buf.getvalue()


make_slow_pdf = slow_pdf  # a few KB, seconds of PDFium work


_PDF_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def make_encrypted_pdf(user_password: bytes = b"secret", owner_password: bytes = b"owner") -> bytes:
    """A one-page PDF protected by a user password (standard security handler, revision 2, RC4-40)."""

    def pad(pw: bytes) -> bytes:
        return (pw + _PDF_PAD)[:32]

    permissions = -4
    file_id = hashlib.md5(b"vlserve-test").digest()
    owner_entry = _rc4(hashlib.md5(pad(owner_password)).digest()[:5], pad(user_password))
    file_key = hashlib.md5(
        pad(user_password) + owner_entry + permissions.to_bytes(4, "little", signed=True) + file_id
    ).digest()[:5]
    user_entry = _rc4(file_key, _PDF_PAD)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (owner_entry.hex().encode(), user_entry.hex().encode(), permissions),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        file_id.hex().encode(),
        file_id.hex().encode(),
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


PNG_BODY = make_png()


class _Handler(BaseHTTPRequestHandler):
    """Routes of the loopback test server; each exercises one way a fetch can go wrong."""

    server_version = "vlserve-test"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        # The client hanging up mid-body is expected (size limit, timeout tests).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self._route(parts, query)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self, parts: list[str], query: dict[str, str]) -> None:
        match parts:
            case ["image"]:
                self._send(200, PNG_BODY, "image/png; charset=binary")
            case ["host"]:
                self._send(200, (self.headers.get("Host") or "").encode())
            case ["cookie"]:
                self._send(200, (self.headers.get("Cookie") or "").encode())
            case ["set-cookie"]:
                self._send(200, b"ok", Set_Cookie="session=secret; Path=/")
            case ["status", code]:
                self._send(int(code), b"nope")
            case ["redirect", n]:  # n hops in all, ending at /image
                target = "/image" if int(n) <= 1 else f"/redirect/{int(n) - 1}"
                self._send(302, b"", Location=target)
            case ["to"]:
                self._send(302, b"", Location=query["url"])
            case ["no-location"]:
                self._send(302, b"")
            case ["bytes"]:  # honest Content-Length
                size = int(query["n"])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self._write_zeros(size)
            case ["stream"]:  # no Content-Length: the body ends when the connection closes
                self.send_response(200)
                self.end_headers()
                self._write_zeros(int(query["n"]))
            case ["lie"]:  # promises 100 bytes, sends 10, hangs up
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"0123456789")
            case ["drip"]:  # one byte every 50 ms, for at most 10 s
                self.send_response(200)
                self.send_header("Content-Length", "200")
                self.end_headers()
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            case ["trickle"]:  # ?n= bytes per write, ?every= seconds between writes, 1 MB in all
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 20))
                self.end_headers()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    self.wfile.write(b"x" * int(query.get("n", "10")))
                    self.wfile.flush()
                    time.sleep(float(query.get("every", "0.05")))
            case ["stall"]:  # headers, then nothing for ?seconds= (default 30)
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.flush()
                time.sleep(float(query.get("seconds", "30")))
            case _:
                self._send(404, b"no such route")

    def _write_zeros(self, n: int) -> None:
        chunk = b"\0" * 65536
        while n > 0:
            self.wfile.write(chunk[:n])
            n -= len(chunk)


class LoopbackServer:
    """The routes above on ``bind`` (a loopback IP) in a background thread, optionally over TLS."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, bind: str = "127.0.0.1") -> None:
        self.bind = bind
        self.httpd = ThreadingHTTPServer((bind, 0), _Handler)
        self.httpd.daemon_threads = True
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if ssl_context else "http"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.bind}:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_loopback_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connects are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsSetup:
    server: LoopbackServer
    client_context: ssl.SSLContext
