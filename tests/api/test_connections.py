"""Connection hygiene and the data directory, against ``vlserve serve`` as a real process.

Raw sockets play the slow and vanishing clients: a slowloris head, an oversized head, a
trickled body, an idle keep-alive connection, and a client that leaves while its answer is being
generated. The server runs from an empty working directory with its data directory elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.samples import data_uri, png_bytes
from tests.api.serving import ServerProcess, serve_subprocess

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
BODY_MIN_RATE = 1000
KEEPALIVE = 1.0
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: tmp_path_factory.mktemp(name) for name in ("cwd", "data", "logs")}


@pytest.fixture(scope="module")
def live(tiny_dir: Path, dirs: dict[str, Path]) -> Iterator[ServerProcess]:
    config = {"http": {"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT,
                       "body_min_rate": BODY_MIN_RATE, "keepalive_timeout": KEEPALIVE,
                       "max_header_bytes": MAX_HEADER_BYTES},
              "limits": {"max_tokens": 4096}}
    with serve_subprocess(tiny_dir, config, cwd=dirs["cwd"], data_dir=dirs["data"], log_dir=dirs["logs"]) as server:
        yield server


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (seconds)."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {limit} s") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def envelope(response: bytes) -> dict[str, object]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def test_slowloris_head_is_cut_off(live: ServerProcess) -> None:
    sock = live.connect()
    start = time.monotonic()
    sent = b""
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
            sock.send(bytes([byte]))
            sent += bytes([byte])
            time.sleep(0.2)  # five header bytes a second: valid, but endless
    except (BrokenPipeError, ConnectionResetError):
        pass
    response, _ = read_until_closed(sock, 5)
    elapsed = time.monotonic() - start
    assert elapsed < HEADER_TIMEOUT + 1.5, elapsed
    assert len(sent) < 20  # the connection ended long before the head could
    assert response.startswith(b"HTTP/1.1 408")
    assert envelope(response)["code"] == 4008


def test_a_connection_that_sends_nothing_is_closed(live: ServerProcess) -> None:
    sock = live.connect()
    response, elapsed = read_until_closed(sock, 5)
    assert response == b""
    assert HEADER_TIMEOUT - 0.3 < elapsed < HEADER_TIMEOUT + 1.5


def test_oversized_head_is_refused_with_431(live: ServerProcess) -> None:
    sock = live.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        for _ in range(64):  # 64 KB of headers, far past the 4 KB cap, never finished
            sock.sendall(b"X-Pad: " + b"p" * 1000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    response, _ = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 431")
    assert envelope(response)["code"] == 4031


def test_a_normal_head_below_the_cap_is_served(live: ServerProcess) -> None:
    response = httpx.get(live.url + "/healthz", headers={"X-Pad": "p" * (MAX_HEADER_BYTES // 2)})
    assert response.status_code == 200


def test_trickled_body_gets_408_and_the_connection_closes(live: ServerProcess) -> None:
    sock = live.connect()
    sock.sendall(b"POST /infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{")
    start = time.monotonic()
    try:
        for _ in range(100):
            sock.send(b" ")  # ten bytes a second, far below the 1000 B/s minimum
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response, _ = read_until_closed(sock, 5)
    assert time.monotonic() - start < BODY_TIMEOUT + 2.5
    assert b" 408 " in response.split(b"\r\n", 1)[0]
    assert envelope(response)["code"] == 4008


def test_idle_keepalive_connection_is_closed(live: ServerProcess) -> None:
    sock = live.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response, elapsed = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 200")
    assert elapsed < KEEPALIVE + 1.5


def test_generation_stops_when_a_non_streaming_client_leaves(live: ServerProcess) -> None:
    body = json.dumps({"task": "captioning", "images": [data_uri(png_bytes(32, 32))],
                       "options": {"max_tokens": 4000, "temperature": 0}}).encode()
    sock = live.connect()
    sock.sendall(b"POST /infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    deadline = time.monotonic() + 30
    while live.metric("vlserve_batch_rows", engine="main") != 1.0:
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.05)
    steps_before = live.metric("vlserve_decode_steps_total", engine="main") or 0.0
    time.sleep(0.5)
    steps_running = live.metric("vlserve_decode_steps_total", engine="main") or 0.0
    assert steps_running > steps_before  # it is generating (4000 tokens take far longer than this test)
    sock.close()
    left = time.monotonic()
    while live.metric("vlserve_batch_rows", engine="main") != 0.0:
        assert time.monotonic() - left < 5.0, "the row kept generating after its client left"
        time.sleep(0.05)
    steps_after = live.metric("vlserve_decode_steps_total", engine="main") or 0.0
    time.sleep(0.5)
    assert live.metric("vlserve_decode_steps_total", engine="main") == steps_after  # nothing runs any more


def test_the_model_directory_is_never_shown(live: ServerProcess, tiny_dir: Path) -> None:
    request = {"task": "captioning", "images": [data_uri(png_bytes(32, 32))], "options": {"max_tokens": 2}}
    answers = [httpx.get(live.url + "/readyz"), httpx.get(live.url + "/v1/models"),
               httpx.post(live.url + "/infer", json=request, timeout=60)]
    for answer in answers:
        assert answer.status_code == 200 and str(tiny_dir) not in answer.text, answer.url
    assert answers[0].json()["model"] == tiny_dir.name


def test_state_goes_to_the_data_dir_and_nothing_to_the_working_dir(live: ServerProcess,
                                                                    dirs: dict[str, Path]) -> None:
    request = {"task": "captioning", "images": [data_uri(png_bytes(32, 32))], "options": {"max_tokens": 3}}
    assert httpx.post(live.url + "/infer", json=request, timeout=60).json()["code"] == 0
    job = httpx.post(live.url + "/jobs", json=request, timeout=30).json()["jobs"][0]["id"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{live.url}/jobs/{job}", timeout=10).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert list(dirs["cwd"].iterdir()) == []
    assert (dirs["data"] / "jobs.sqlite3").is_file()


async def _hello(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(5)
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_head_guard_works_with_either_parser(parser: str) -> None:
    """uvicorn picks httptools when installed, else h11: the guard holds with both."""
    import threading

    import uvicorn

    from vlserve.api.connection import protocol_class
    from vlserve.config import Http

    if parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    http = Http(header_timeout=1.0, max_header_bytes=2048)
    config = uvicorn.Config(_hello, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            http=protocol_class(http, base), h11_max_incomplete_event_size=2048 + 256 * 1024)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a second request that never ends its head
            response, elapsed = read_until_closed(sock, 5)
            assert b"HTTP/1.1 408" in response and elapsed < 2.5  # after the rest of the first answer
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 5000 + b"\r\n")
            response, _ = read_until_closed(sock, 5)
            assert response.startswith(b"HTTP/1.1 431") and envelope(response)["code"] == 4031
        if parser == "h11":
            return  # h11 stops reading while a request runs: a pipelined head waits in the kernel
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # httptools keeps parsing behind a running request: such a pipelined head is bounded
            # too, instead of growing until the first answer is done.
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            try:
                for _ in range(64):
                    sock.sendall(b"X-Pad: " + b"p" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            read_until_closed(sock, 10)
            assert time.monotonic() - start < 3  # closed long before /slow's five seconds
    finally:
        server.should_exit = True
        thread.join(timeout=10)
