"""The shipped gateway settings run a real `vlserve serve` process without torch: each deploy/ config,
with its hosts pointed at loopback (a real redis-server; an upstream port nobody listens on), starts
with torch and transformers blocked from import, and answers the way the Kubernetes probes and the
alert rules expect while its vLLM upstream is down: /healthz 200 (no restart), /readyz 503 (out of
the Service), /infer a coded 5007, and /metrics counting it as `vlserve_errors_total{code="5007"}`,
the series VlserveUpstreamsUnreachable watches."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.deploy.helpers import DEPLOY, vlserve_configs
from tests.jobs.helpers import free_port, start_redis

# Runs the CLI with torch and transformers unimportable: the gateway image has neither.
NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'vllm'):
            raise ImportError(f'{name} is not installed in the gateway image')
sys.meta_path.insert(0, Block())
from vlserve.cli.main import app
app(sys.argv[1:], prog_name='vlserve')
"""


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    proc, port = start_redis(binary, tmp_path_factory.mktemp("redis"))
    yield port
    proc.kill()
    proc.wait(timeout=10)


def loopback_copy(path: Path, tmp: Path, redis_port: int, dead_port: int) -> Path:
    """``path`` with every service host replaced by loopback addresses, state under ``tmp``, probes fast."""
    data: dict[str, Any] = tomllib.loads(path.read_text())
    data.update(host="127.0.0.1", port=0, data_dir=str(tmp / "data"))
    pools = [data["remote"], *data.get("scheduling", {}).get("models", {}).values()]
    for pool in pools:
        pool["upstreams"] = [f"http://127.0.0.1:{dead_port}" for _ in pool["upstreams"]]
        pool["probe_interval"] = 0.2
        pool["connect_timeout"] = 1.0
    data["jobs"]["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
    data["recon3d"]["artifacts_dir"] = str(tmp / "artifacts")
    out = tmp / path.name
    out.write_text(tomli_w.dumps(data))
    return out


def png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("path", vlserve_configs(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_gateway_serves_without_torch_and_reports_dead_upstreams(path: Path, tmp_path: Path, redis_port: int) -> None:
    config = loopback_copy(path, tmp_path, redis_port, free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
    proc = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line + proc.stdout.read() if proc.poll() is not None else line
        base = f"http://127.0.0.1:{found.group(1)}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 30
            ready = client.get("/readyz")
            while ready.status_code != 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                ready = client.get("/readyz")
            assert ready.status_code == 503, ready.text  # the readiness probe takes it out of the Service
            assert ready.json()["ready"] is False
            assert client.get("/healthz").status_code == 200  # the liveness probe does not restart it
            answer = client.post("/infer", json={"task": "vqa", "images": [png()], "text": "What colour?"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == 5007
            metrics = client.get("/metrics").text
            assert re.search(r'^vlserve_errors_total\{code="5007"\} [1-9]', metrics, re.M), metrics[:2000]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
