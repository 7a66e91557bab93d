"""Where state goes: one data directory (option, setting, env var, per-user default), never the
working directory; relative state paths in the settings resolve under it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vlserve.config import Settings


def test_relative_state_paths_resolve_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLSERVE_DATA_DIR", raising=False)  # the environment would win over the file
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "state"), "jobs": {"sqlite_path": "db/jobs.db"},
                                  "moderation": {"audit_log": str(tmp_path / "elsewhere" / "audit.jsonl")}}))
    settings = Settings.load(config)
    assert settings.jobs.sqlite_path == tmp_path / "state" / "db" / "jobs.db"
    assert settings.recon3d.artifacts_dir == tmp_path / "state" / "artifacts"
    assert settings.moderation.audit_log == tmp_path / "elsewhere" / "audit.jsonl"  # absolute stays


def test_the_option_beats_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLSERVE_DATA_DIR", str(tmp_path / "from-env"))
    assert Settings.load().jobs.sqlite_path == tmp_path / "from-env" / "jobs.sqlite3"
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "from-file")}))
    assert Settings.load(config, data_dir=tmp_path / "from-option").data_dir == tmp_path / "from-option"


def test_the_default_is_per_user_and_never_the_working_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLSERVE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / "xdg" / "vlserve"
    for path in (settings.jobs.sqlite_path, settings.recon3d.artifacts_dir, settings.moderation.audit_log):
        assert path.is_absolute() and path.is_relative_to(settings.data_dir)
    assert os.listdir(tmp_path) == []  # reading the settings made nothing either
