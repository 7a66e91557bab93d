"""What only the SQLite store promises: its file format and durability settings."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlserve.jobs import SQLiteJobStore


def test_file_is_in_wal_mode_with_its_indexes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "jobs.db"

    async def main() -> None:
        async with SQLiteJobStore(path) as store:
            await store.submit("alice", [{}], lane="default")

    asyncio.run(main())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_queue", "jobs_owner", "jobs_lease", "jobs_finished"} <= indexes
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM jobs WHERE status = 'queued' AND lane = 'default' "
                "ORDER BY priority DESC, created_at, seq LIMIT 1"
            )
        )
        assert "jobs_queue" in plan and "TEMP B-TREE" not in plan  # claim reads one index entry
    finally:
        conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    async def main() -> None:
        store = SQLiteJobStore(path)
        try:
            with pytest.raises(RuntimeError, match="schema 99"):
                await store.counts()
        finally:
            await store.aclose()

    asyncio.run(main())


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteJobStore(tmp_path / "jobs.db", synchronous="NORMAL")
        await store.aclose()
        await store.aclose()  # twice is fine
        with pytest.raises(RuntimeError, match="closed"):
            await store.counts()

    asyncio.run(main())


_OPENER = """
import asyncio, os, sys, time
from vlserve.jobs import SQLiteJobStore
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.0002)
async def main():
    async with SQLiteJobStore(sys.argv[1]) as store:
        await store.submit("alice", [{}], lane="default")
asyncio.run(main())
"""


def test_many_processes_may_create_the_same_file_at_once(tmp_path: Path) -> None:
    # Replicas starting together all find a fresh file and switch it to WAL. That switch is not
    # covered by SQLite's busy timeout, so the store must retry it itself.
    n = 4
    for round_ in range(12):
        path, go = tmp_path / f"jobs{round_}.db", tmp_path / f"go{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPENER, str(path), str(go)], stderr=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        time.sleep(0.15)  # let every process import and reach the barrier
        go.touch()
        errors = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode:
                errors.append(err)
        assert not errors, errors[0]
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == n
        finally:
            conn.close()
