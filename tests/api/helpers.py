"""Real vlserve servers on loopback (uvicorn in a thread) and the settings the API tests share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from vlserve.config import Settings

KEYS = {"alice": "vls-alice-secret", "bob": "vls-bob-secret", "slow": "vls-slow-secret",
        "slow-sdk": "vls-slow-sdk-secret"}
BLOCKED_TERM = "forbidden-topic"


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: Any


def run_server(app: Any) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
