"""Privacy mode's retention: files a restart or a failed build left behind go after
``privacy.artifact_seconds``, not after ``recon3d.retention_seconds``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.api.helpers import make_settings
from vlserve.service.retention import purge


@pytest.mark.parametrize(("private", "left"), [(True, False), (False, True)])
def test_leftover_artifacts_go_after_privacy_artifact_seconds(tmp_path: Path, private: bool, left: bool) -> None:
    settings = make_settings(tmp_path, privacy={"enabled": private, "artifact_seconds": 60})
    old = settings.recon3d.artifacts_dir / "req_left_by_a_restart"
    old.mkdir(parents=True)
    (old / "model.stl").write_bytes(b"solid x")
    ten_minutes_ago = time.time() - 600
    os.utime(old, (ten_minutes_ago, ten_minutes_ago))
    fresh = settings.recon3d.artifacts_dir / "req_just_made"
    fresh.mkdir()
    summary = asyncio.run(purge(settings, None))
    assert old.exists() is left and fresh.exists()
    assert summary.artifact_dirs_deleted == (0 if left else 1)
