"""Whose data is whose: artifacts and jobs per key, wrong keys limited per address, protected docs
and metrics, /readyz without paths, failed jobs without internals, the per-key job quota."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.samples import data_uri, png_bytes
from tests.api.serving import serve_in_thread
from vlserve.api.app import create_app
from vlserve.config import ApiKey, Settings
from vlserve.service.artifacts import record_owner
from vlserve.service.auth import hash_key

ALICE_KEY, BOB_KEY = "vls-own-alice", "vls-own-bob"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


@pytest.fixture
def serve(engine: Any, tmp_path: Path) -> Iterator[Callable[..., AbstractContextManager[str]]]:
    """Start a server of our own (its own key ring, limits and data directory) with ``overrides``."""

    def start(**overrides: Any) -> AbstractContextManager[str]:
        data: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "auth": {"keys": [ApiKey(id="alice", sha256=hash_key(ALICE_KEY)).model_dump(),
                              ApiKey(id="bob", sha256=hash_key(BOB_KEY)).model_dump()]},
        }
        for section, values in overrides.items():
            data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
        settings = Settings.model_validate(data)
        app = create_app(settings, engine=engine)
        start.app = app  # type: ignore[attr-defined]
        return serve_in_thread(app)

    yield start


def test_artifacts_belong_to_the_key_that_made_them(server: Any) -> None:
    root = server.settings.recon3d.artifacts_dir
    mine = root / "req_ownedbyalice"
    mine.mkdir(parents=True)
    (mine / "model.glb").write_bytes(b"glTF-alice")
    record_owner(mine, "alice")  # what the service does once the task has written its files
    orphan = root / "req_noowner"
    orphan.mkdir()
    (orphan / "model.glb").write_bytes(b"glTF-nobody")
    alice = {"Authorization": "Bearer vls-alice-secret"}
    bob = {"Authorization": "Bearer vls-bob-secret"}

    got = httpx.get(server.url + "/artifacts/req_ownedbyalice/model.glb", headers=alice)
    assert got.status_code == 200 and got.content == b"glTF-alice"
    other = httpx.get(server.url + "/artifacts/req_ownedbyalice/model.glb", headers=bob)
    missing = httpx.get(server.url + "/artifacts/req_ownedbyalice/nope.glb", headers=bob)
    assert other.status_code == missing.status_code == 404
    assert other.json()["code"] == missing.json()["code"] == 4040
    assert other.json()["msg"] == missing.json()["msg"]  # "not yours" looks exactly like "not there"
    assert httpx.get(server.url + "/artifacts/req_ownedbyalice/.owner", headers=alice).status_code == 404
    assert httpx.get(server.url + "/artifacts/req_noowner/model.glb", headers=alice).status_code == 404
    assert httpx.get(server.url + "/artifacts/req_ownedbyalice/model.glb").status_code == 401


def test_wrong_keys_are_limited_per_client_address(serve: Any) -> None:
    with serve(auth={"max_failures_per_minute": 3}) as url:
        body = {"task": "captioning", "images": [data_uri(png_bytes(16, 16))], "options": {"max_tokens": 1}}
        for guess in range(3):
            refused = httpx.post(url + "/infer", json=body, headers={"Authorization": f"Bearer guess-{guess}"})
            assert refused.status_code == 401
        limited = httpx.post(url + "/infer", json=body, headers={"Authorization": "Bearer guess-4"})
        assert limited.status_code == 429 and limited.json()["code"] == 4029
        assert int(limited.headers["Retry-After"]) >= 1
        # Guessing right now does not help: the address waits, whatever key it sends.
        assert httpx.post(url + "/infer", json=body, headers=ALICE).status_code == 429


def test_missing_keys_do_not_count_as_guesses(serve: Any) -> None:
    with serve(auth={"max_failures_per_minute": 2}) as url:
        for _ in range(5):
            assert httpx.get(url + "/jobs").status_code == 401
        assert httpx.get(url + "/jobs", headers=ALICE).status_code == 200


def test_docs_and_metrics_can_require_a_key(serve: Any) -> None:
    with serve(auth={"protect_docs": True, "protect_metrics": True}) as url:
        for path in ("/metrics", "/openapi.json", "/docs"):
            anonymous = httpx.get(url + path)
            assert anonymous.status_code == 401 and anonymous.json()["code"] == 4001, path
            assert httpx.get(url + path, headers=ALICE).status_code == 200, path
        assert httpx.get(url + "/healthz").status_code == 200  # probes stay public
        assert httpx.get(url + "/readyz").status_code == 200


def test_no_docs_means_no_openapi_either(serve: Any) -> None:
    with serve(expose_docs=False) as url:
        assert httpx.get(url + "/docs").status_code == 404
        assert httpx.get(url + "/openapi.json").status_code == 404


def test_readyz_shows_no_filesystem_path(server: Any, tiny_dir: Path) -> None:
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200
    assert str(tiny_dir) not in ready.text and str(tiny_dir.parent) not in ready.text
    assert not any(isinstance(v, str) and v.startswith("/") for v in ready.json().values())


def wait_status(url: str, job_id: str, want: set[str], headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in want:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_a_failed_job_shows_the_public_message_only(serve: Any) -> None:
    with serve() as url:
        app = serve.app  # type: ignore[attr-defined]
        body = {"task": "captioning", "images": [data_uri(png_bytes(32, 32))],
                "options": {"max_tokens": 1000, "temperature": 0}}
        job_id = httpx.post(url + "/jobs", json=body, headers=ALICE).json()["jobs"][0]["id"]
        wait_status(url, job_id, {"running"}, ALICE)
        deadline = time.monotonic() + 30
        engine = app.state.service.scheduler.engines["main"]
        while engine.rows == 0:  # generating, not just claimed
            assert time.monotonic() < deadline
            time.sleep(0.02)
        engine.close()  # a real internal failure: "the engine was shut down before this request finished"
        job = wait_status(url, job_id, {"failed"}, ALICE)
        assert job["error"]["code"] == 5000
        assert "engine" not in job["error"]["msg"] and "shut down" not in job["error"]["msg"]
        assert job_id in job["error"]["msg"] or "quote the job id" in job["error"]["msg"]


def test_job_listing_is_summaries_without_bodies(serve: Any) -> None:
    with serve(jobs={"workers": 0}) as url:
        body = {"task": "captioning", "images": [data_uri(png_bytes(64, 64, seed=i)) for i in range(3)]}
        submitted = httpx.post(url + "/jobs", json=[body] * 5, headers=ALICE).json()["jobs"]
        listed = httpx.get(url + "/jobs", headers=ALICE).json()["jobs"]
        assert {j["id"] for j in listed} == {j["id"] for j in submitted}
        for job in listed:
            assert job["task"] == "captioning" and job["status"] == "queued"
            assert "result" not in job and "request" not in job
        assert "result" in httpx.get(f"{url}/jobs/{listed[0]['id']}", headers=ALICE).json()


def test_stored_job_bytes_per_key_are_limited(serve: Any) -> None:
    image = data_uri(png_bytes(96, 96))  # ~37 kB of base64
    body = {"task": "captioning", "images": [image]}
    with serve(jobs={"workers": 0, "max_stored_bytes_per_key": 60_000}) as url:
        assert httpx.post(url + "/jobs", json=body, headers=ALICE).status_code == 202
        over = httpx.post(url + "/jobs", json=body, headers=ALICE)
        assert over.status_code == 429 and over.json()["code"] == 4029
        assert "quota" in over.json()["msg"] and "Retry-After" in over.headers
        assert httpx.post(url + "/jobs", json=body, headers=BOB).status_code == 202  # bob's own quota
        assert len(httpx.get(url + "/jobs", headers=ALICE).json()["jobs"]) == 1  # nothing was written
