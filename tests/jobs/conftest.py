"""Fixtures: each test's backend (SQLite file, or a prefix on the session's redis-server from the root
conftest)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.jobs.helpers import Backend


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The store under test: a fresh SQLite file, or a fresh key prefix on the shared Redis."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "jobs.sqlite3"))
    url = request.getfixturevalue("redis_url")
    return Backend("redis", url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
