"""The shipped gateway settings run a real `vlserve serve` process without torch (torch, transformers
and vllm blocked from import), with their hosts pointed at loopback and a real redis-server:

- every deploy/ config, its upstream a port nobody listens on, answers the way the Kubernetes probes
  and the alert rules expect: /healthz 200 (no restart), /readyz 503 (out of the Service), /infer a
  coded 5007, and /metrics counting `vlserve_errors_total{code="5007"}` (VlserveUpstreamsUnreachable);
- the CPU compose config in front of a real `vlserve serve` with the tiny model (what its `engine`
  service runs) answers /infer and runs a job through Redis."""

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.api.serving import serve_subprocess
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


def loopback_copy(path: Path, tmp: Path, redis_port: int, upstream: str) -> Path:
    """``path`` with every service host replaced by loopback addresses, state under ``tmp``, probes fast."""
    data: dict[str, Any] = tomllib.loads(path.read_text())
    data.update(host="127.0.0.1", port=0, data_dir=str(tmp / "data"))
    pools = [data["remote"], *data.get("scheduling", {}).get("models", {}).values()]
    for pool in pools:
        pool["upstreams"] = [upstream for _ in pool["upstreams"]]
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
    config = loopback_copy(path, tmp_path, redis_port, f"http://127.0.0.1:{free_port()}")
    with gateway(config) as base, httpx.Client(base_url=base, timeout=10) as client:
        ready = wait_for_readyz(client, 503)  # the readiness probe takes it out of the Service
        assert ready.json()["ready"] is False
        assert client.get("/healthz").status_code == 200  # the liveness probe does not restart it
        answer = client.post("/infer", json={"task": "vqa", "images": [png()], "text": "What colour?"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == 5007
        metrics = client.get("/metrics").text
        assert re.search(r'^vlserve_errors_total\{code="5007"\} [1-9]', metrics, re.M), metrics[:2000]


def test_cpu_compose_gateway_in_front_of_a_real_engine(tiny_dir: Path, tmp_path: Path, redis_port: int) -> None:
    """What `docker compose -f compose.cpu.yaml up` runs, as processes: the gateway with the shipped
    settings in front of `vlserve serve --model tiny`; an answer comes back through it, and a job
    submitted to it is run by its worker through Redis."""
    (tmp_path / "engine").mkdir()
    with serve_subprocess(tiny_dir, {}, cwd=tmp_path, data_dir=tmp_path / "engine", log_dir=tmp_path) as engine:
        config = loopback_copy(DEPLOY / "docker" / "gateway-cpu.toml", tmp_path, redis_port, engine.url)
        with gateway(config) as base, httpx.Client(base_url=base, timeout=60) as client:
            wait_for_readyz(client, 200)
            answer = client.post("/infer", json={"task": "vqa", "images": [png()], "text": "What colour?",
                                                 "options": {"max_tokens": 4}})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["code"] == 0 and isinstance(body["result"]["answer"], str)
            submitted = client.post("/jobs", json={"task": "captioning", "images": [png()],
                                                   "options": {"max_tokens": 4}})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["jobs"][0]["id"]
            deadline = time.monotonic() + 60
            job = client.get(f"/jobs/{job_id}").json()
            while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.2)
                job = client.get(f"/jobs/{job_id}").json()
            assert job["status"] == "succeeded", job
        # The upstream really answered both (its own admissions), not the gateway alone.
        assert (engine.metric("vlserve_admitted_total", lane="interactive") or 0) >= 1


def wait_for_readyz(client: httpx.Client, status: int, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    ready = client.get("/readyz")
    # A 503 while the engines are still being built says nothing yet about the upstreams: wait for
    # the service (its lanes in the answer), or /infer races the start-up and gets "loading" (2001).
    while (ready.status_code != status or "lanes" not in ready.json()) and time.monotonic() < deadline:
        time.sleep(0.2)
        ready = client.get("/readyz")
    assert ready.status_code == status, ready.text
    return ready


@contextmanager
def gateway(config: Path) -> Iterator[str]:
    """`vlserve serve --config CONFIG` without torch; yields its URL and stops it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
    proc = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line + (proc.stdout.read() if proc.poll() is not None else "")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
