"""``vlserve serve`` as a real subprocess on loopback, for tests of what only a deployed server does
(connection handling in uvicorn's protocol, the working directory, the data directory)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vlserve.testing.server import serving


@dataclass
class ServerProcess:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of ``/metrics`` (None when absent)."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        match = re.search(rf"^{re.escape(name)}{re.escape('{' + inner + '}') if inner else ''} (\S+)$", text, re.M)
        return float(match.group(1)) if match else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_subprocess(model: Path, config: dict[str, Any], *, cwd: Path, data_dir: Path,
                     log_dir: Path) -> Iterator[ServerProcess]:
    """Start ``vlserve serve --model MODEL --data-dir DATA_DIR`` in ``cwd``; stop it afterwards."""
    config_file = log_dir / "settings.json"
    config_file.write_text(json.dumps(config))
    log = log_dir / "server.log"
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VLSERVE_DATA_DIR", None)  # the --data-dir option is what is under test
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlserve.cli.main", "serve", "--model", str(model), "--port", str(port),
             "--config", str(config_file), "--data-dir", str(data_dir), "--log-level", "warning"],
            cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text()}")
            try:
                if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


serve_in_thread = serving  # a real uvicorn on loopback, in a thread (context manager)