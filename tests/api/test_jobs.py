"""/jobs over real servers: results, ownership, cancel, metrics, and SIGKILL of the server mid-batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import KEYS, LiveServer, make_settings, run_server
from tests.api.samples import data_uri, png_bytes
from vlserve.api.app import create_app
from vlserve.testing import FakeEngine

ALICE = {"Authorization": f"Bearer {KEYS['alice']}"}
BOB = {"Authorization": f"Bearer {KEYS['bob']}"}


def caption(seed: int, tokens: int = 6) -> dict[str, Any]:
    return {"task": "captioning", "images": [data_uri(png_bytes(seed=seed))], "options": {"max_tokens": tokens}}


def wait_for(url: str, job_ids: list[str], headers: dict[str, str], timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [httpx.get(f"{url}/jobs/{j}", headers=headers, timeout=10).json() for j in job_ids]
        if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [j["status"] for j in jobs]
        time.sleep(0.2)


def test_jobs_run_and_are_private(server: LiveServer) -> None:
    submitted = httpx.post(server.url + "/jobs", json=[caption(1), caption(2)], headers=ALICE, timeout=30)
    assert submitted.status_code == 202, submitted.text
    ids = [j["id"] for j in submitted.json()["jobs"]]
    assert [j["lane"] for j in submitted.json()["jobs"]] == ["interactive", "interactive"]
    done = wait_for(server.url, ids, ALICE)
    for job in done:
        assert job["status"] == "succeeded" and job["progress"] == 1.0
        assert job["result"]["code"] == 0 and job["result"]["result"]["metadata"]["output_tokens"] <= 6
    # Bob can neither see nor cancel Alice's jobs, and does not find them in his list.
    other = httpx.get(f"{server.url}/jobs/{ids[0]}", headers=BOB)
    assert other.status_code == 404 and other.json()["code"] == 4040
    assert httpx.delete(f"{server.url}/jobs/{ids[0]}", headers=BOB).status_code == 404
    assert ids[0] not in {j["id"] for j in httpx.get(server.url + "/jobs", headers=BOB).json()["jobs"]}
    assert set(ids) <= {j["id"] for j in httpx.get(server.url + "/jobs", headers=ALICE).json()["jobs"]}
    # Finished jobs cannot be cancelled; a single body is accepted too; bad bodies are refused whole.
    assert httpx.delete(f"{server.url}/jobs/{ids[0]}", headers=ALICE).json()["code"] == 4000
    single = httpx.post(server.url + "/jobs", json=caption(3), headers=ALICE)
    assert single.status_code == 202 and len(single.json()["jobs"]) == 1
    bad = httpx.post(server.url + "/jobs", json=[caption(4), {"task": "telepathy"}], headers=ALICE)
    assert bad.status_code == 400 and bad.json()["code"] == 4004
    metrics = httpx.get(server.url + "/metrics").text
    assert 'vlserve_jobs{lane="interactive",status="succeeded"}' in metrics


def test_cancel_queued_job(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs={"sqlite_path": str(tmp_path / "j.sqlite3"), "workers": 0})
    for url in run_server(create_app(settings, engine=FakeEngine())):  # nothing runs: no model needed
        job = httpx.post(url + "/jobs", json=caption(5)).json()["jobs"][0]
        cancelled = httpx.delete(f"{url}/jobs/{job['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert httpx.get(f"{url}/jobs/{job['id']}").json()["status"] == "cancelled"
        assert httpx.get(url + "/jobs?status=cancelled").json()["jobs"][0]["id"] == job["id"]


# ---- a job accepted is never lost: SIGKILL the server mid-batch, restart, every job done once --------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "vlserve.cli.main", "serve", "--config", str(config),
                             "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.fixture(params=["sqlite", "redis"])
def jobs_backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"backend": "sqlite", "sqlite_path": str(tmp_path / "jobs.sqlite3")}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture
def server_config(tiny_dir: Path, tmp_path: Path, jobs_backend: dict[str, Any]) -> Iterator[Path]:
    settings = make_settings(tmp_path, model=str(tiny_dir),
                             jobs={**jobs_backend, "workers": 2, "lease_seconds": 2.0},
                             scheduling={"lanes": {"interactive": {"concurrency": 2}, "batch": {}, "video": {}}})
    config = tmp_path / "settings.json"
    config.write_text(settings.model_dump_json())
    yield config


def test_sigkill_mid_batch_loses_nothing(server_config: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(server_config, port)
    try:
        wait_ready(url, proc)
        response = httpx.post(url + "/jobs", json=[caption(i, tokens=60) for i in range(10)], timeout=30)
        ids = [j["id"] for j in response.json()["jobs"]]
        deadline = time.monotonic() + 120
        while True:  # kill once some jobs are done and others are running
            statuses = [httpx.get(f"{url}/jobs/{i}").json()["status"] for i in ids]
            if statuses.count("succeeded") >= 2 and "running" in statuses:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc = start_server(server_config, port)
        wait_ready(url, proc)
        jobs = wait_for(url, ids, {}, timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert [j["status"] for j in jobs] == ["succeeded"] * 10
    assert [j["result"]["request_id"] for j in jobs] == [f"job_{i}" for i in ids]  # each its own, exactly one
    assert any(j["attempts"] >= 2 for j in jobs)  # the ones running at the kill were run again
    assert len({json.dumps(j["result"]["result"]["answer"]) for j in jobs}) >= 1
