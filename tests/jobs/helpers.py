"""Shared helpers: the backend under test, bounded waits, and worker subprocesses."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlserve.jobs import RedisJobStore, SQLiteJobStore

WORKER_SCRIPT = Path(__file__).with_name("worker_proc.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Backend:
    """Where a test's jobs live: a SQLite file, or a key prefix of the session's Redis server."""

    kind: Literal["sqlite", "redis"]
    target: str  # the SQLite file path, or the Redis URL
    prefix: str = ""

    def open(self, **options: Any) -> SQLiteJobStore | RedisJobStore:
        """A new store instance on this backend (each call is an independent connection)."""
        if self.kind == "sqlite":
            return SQLiteJobStore(self.target, **options)
        return RedisJobStore(self.target, prefix=self.prefix, **options)

    def worker_args(self) -> list[str]:
        return ["--backend", self.kind, "--target", self.target, "--prefix", self.prefix]


def run(backend: Backend, body: Any, **options: Any) -> Any:
    """Run ``body(store)`` in a fresh event loop with a store that is closed afterwards."""

    async def main() -> Any:
        store = backend.open(**options)
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds, never hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(interval)


def start_worker(backend: Backend, executions: Path, *extra: str) -> subprocess.Popen[str]:
    """Start ``worker_proc.py`` against the backend; it prints ``ready`` once its store is open."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), *backend.worker_args(), "--executions", str(executions), *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc


def wait_ready(proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Block until the worker process says ``ready`` (bounded by a timer that kills it)."""
    assert proc.stdout is not None
    import threading

    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    assert line.strip() == "ready", f"worker process did not start (exit code {proc.poll()})"


def stop_process(proc: subprocess.Popen[str]) -> None:
    """End a worker process we started: SIGTERM (graceful), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def read_executions(path: Path) -> list[tuple[str, int]]:
    """The ``(job id, pid)`` of every handler run recorded by worker processes."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, pid = line.split()
        rows.append((job_id, int(pid)))
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    import redis

    # The port is free when chosen but could be taken before redis binds it: retry a few times.
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return proc, port
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        proc.kill()
        proc.wait(timeout=5)
    raise RuntimeError("could not start redis-server")
