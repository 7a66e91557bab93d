"""Retention in a running server: finished jobs and old artifacts are purged in the background, and
the audit log rotates by size keeping a bounded number of files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.samples import data_uri, png_bytes
from tests.api.serving import serve_in_thread
from vlserve.api.app import create_app
from vlserve.config import Moderation, Settings
from vlserve.errors import SensitiveContentError
from vlserve.service.moderation import Moderator


def test_the_server_purges_expired_jobs_and_artifacts(engine: Any, tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "data_dir": str(tmp_path / "data"),
        "retention": {"purge_interval": 0.2},
        "jobs": {"retention_seconds": 1.0},
        "recon3d": {"retention_seconds": 3600.0},
    })
    old = settings.recon3d.artifacts_dir / "req_old"
    old.mkdir(parents=True)
    (old / "model.glb").write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = settings.recon3d.artifacts_dir / "req_fresh"
    fresh.mkdir()
    with serve_in_thread(create_app(settings, engine=engine)) as url:
        body = {"task": "captioning", "images": [data_uri(png_bytes(16, 16))], "options": {"max_tokens": 2}}
        job_id = httpx.post(url + "/jobs", json=body).json()["jobs"][0]["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/jobs/{job_id}").json().get("status") != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        finished = time.monotonic()
        while httpx.get(f"{url}/jobs/{job_id}").status_code != 404:
            assert time.monotonic() - finished < 10, "the finished job was never purged"
            time.sleep(0.1)
        assert time.monotonic() - finished > 0.5  # kept for (about) its retention first
        assert not old.exists() and fresh.exists()


def test_audit_log_rotates_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    moderator = Moderator(Moderation(blocked_terms=["secret"], audit_log=log, audit_max_bytes=1024, audit_keep=2))
    for index in range(40):  # each refusal appends ~300 bytes: several rotations
        with pytest.raises(SensitiveContentError):
            moderator.check("a secret", stage="input", request_id=f"req_{index}", key_id="k", input_hashes=[])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 1024 for name in files)
    assert '"req_39"' in log.read_text()  # the newest entry is in the live file
