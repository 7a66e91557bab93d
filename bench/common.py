"""Shared by the service benchmarks: a real server on loopback with a tiny model, and sample inputs."""

from __future__ import annotations

import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from vlserve.config import Settings


def image_uri(seed: int, size: int = 64) -> str:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def vqa(seed: int, max_tokens: int) -> dict[str, Any]:
    return {"task": "vqa", "images": [image_uri(seed)], "text": f"What is in picture {seed}?",
            "options": {"max_tokens": max_tokens}}


@contextmanager
def serve_process(settings: Settings) -> Iterator[str]:
    """``vlserve serve`` as its own process (as deployed), so client and server do not share a GIL."""
    with served(settings) as (url, _):
        yield url


@contextmanager
def served(settings: Settings, *, cpus: set[int] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`serve_process`, also giving the server's process (to read its memory); ``cpus``: the
    only CPUs it (every thread it starts) may run on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "settings.json"
        config.write_text(settings.model_dump_json())
        log = (Path(tmp) / "server.log").open("wb")  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([sys.executable, "-m", "vlserve.cli.main", "serve", "--config", str(config),
                                 "--port", str(port), "--log-level", "warning"],
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "server.log").read_text())
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become ready")
                time.sleep(0.2)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    return (f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms, "
            f"mean {statistics.mean(values) * 1000:.1f} ms")


def own_peak_rss(pid: int) -> int:
    """Peak resident bytes (VmHWM) of process ``pid``, read from /proc (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(pid: int) -> int:
    """:func:`own_peak_rss` of ``pid`` plus those of its living children (the isolated PDF and
    video workers)."""
    return sum(own_peak_rss(p) for p in [pid, *_children(pid)])


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [g for c in found for g in _children(c)]
