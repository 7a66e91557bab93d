"""``vlserve purge``: finished jobs, artifacts and surplus audit logs past their retention go; fresh
and unfinished state stays (a real SQLite store and real files in a data directory)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path

from typer.testing import CliRunner

from vlserve.cli.main import app
from vlserve.jobs import SQLiteJobStore
from vlserve.service.artifacts import record_owner

DAY = 86400.0


async def make_jobs(path: Path) -> dict[str, str]:
    async with SQLiteJobStore(path) as store:
        made = await store.submit("alice", [{"task": "ocr", "n": i} for i in range(3)], lane="batch")
        for _ in range(2):
            job = await store.claim("w", ["batch"], 30)
            assert job is not None
            await store.complete(job.id, "w", result={"n": job.request["n"]})
        return {"old": made[0].id, "fresh": made[1].id, "queued": made[2].id}


def test_purge_applies_every_retention_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = asyncio.run(make_jobs(data / "jobs.sqlite3"))
    conn = sqlite3.connect(data / "jobs.sqlite3")
    with conn:  # age one finished job by ten days
        conn.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - 10 * DAY, ids["old"]))
    conn.close()
    for name, age in (("req_old", 10 * DAY), ("req_new", 0.0)):
        folder = data / "artifacts" / name
        folder.mkdir(parents=True)
        (folder / "model.glb").write_bytes(b"x" * 1000)
        record_owner(folder, "alice")
        os.utime(folder, (time.time() - age, time.time() - age))
    (data / "audit.jsonl").write_text("{}\n")
    for index in range(1, 8):  # audit_keep is 5: .6 and .7 are surplus
        (data / f"audit.jsonl.{index}").write_text("{}\n")

    result = CliRunner().invoke(app, ["purge", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"jobs_deleted": 1, "artifact_dirs_deleted": 1, "artifact_bytes_freed": 1005,
                                         "audit_files_deleted": 2}

    conn = sqlite3.connect(data / "jobs.sqlite3")
    left = {row[0] for row in conn.execute("SELECT id FROM jobs")}
    bodies = conn.execute("SELECT COUNT(*) FROM job_bodies").fetchone()[0]
    conn.close()
    assert left == {ids["fresh"], ids["queued"]} and bodies == 2
    assert sorted(p.name for p in (data / "artifacts").iterdir()) == ["req_new"]
    kept = sorted(p.name for p in data.glob("audit.jsonl*"))
    assert kept == ["audit.jsonl", *[f"audit.jsonl.{i}" for i in range(1, 6)]]


def test_purge_keeps_artifacts_under_their_byte_quota(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for index in range(4):
        folder = data / "artifacts" / f"req_{index}"
        folder.mkdir(parents=True)
        (folder / "model.glb").write_bytes(b"x" * 10_000)
        os.utime(folder, (time.time() - 100 + index, time.time() - 100 + index))  # req_0 is the oldest
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"recon3d": {"max_bytes": 25_000}}))
    result = CliRunner().invoke(app, ["purge", "--config", str(config), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (data / "artifacts").iterdir()) == ["req_2", "req_3"]
