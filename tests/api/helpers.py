"""Real vlserve servers on loopback (uvicorn in a thread) and the settings the API tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlserve.config import Settings
from vlserve.testing.server import iter_server

KEYS = {"alice": "vls-alice-secret", "bob": "vls-bob-secret", "slow": "vls-slow-secret",
        "slow-sdk": "vls-slow-sdk-secret"}
BLOCKED_TERM = "forbidden-topic"


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: Any


run_server = iter_server  # a real uvicorn on loopback, in a thread

def make_settings(tmp: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "limits": {"max_images": 3, "max_body_bytes": 4 * 1024 * 1024, "max_pdf_pages": 3, "max_tokens": 1024},
        "fetching": {"local_root": str(tmp / "files")},
        "moderation": {"blocked_terms": [BLOCKED_TERM], "audit_log": str(tmp / "audit.jsonl")},
        "jobs": {"sqlite_path": str(tmp / "jobs.sqlite3")},
        "recon3d": {"artifacts_dir": str(tmp / "artifacts")},
    }
    data.update(overrides)
    (tmp / "files").mkdir(exist_ok=True)
    return Settings.model_validate(data)
