"""Real vlserve servers on loopback (uvicorn in a thread), sharing the session's tiny engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from vlserve.api.app import create_app
from vlserve.config import ApiKey, Settings
from vlserve.service.auth import hash_key

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


@pytest.fixture(scope="session")
def server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The dense tiny model behind API keys (alice, bob: generous; slow, slow-sdk: 2 requests a minute)."""
    tmp = tmp_path_factory.mktemp("server")
    keys = [ApiKey(id=name, sha256=hash_key(key), rate_per_minute=2 if name.startswith("slow") else 10_000)
            for name, key in KEYS.items()]
    settings = make_settings(tmp, auth={"keys": [k.model_dump() for k in keys]})
    app = create_app(settings, engine=engine)
    for url in run_server(app):
        yield LiveServer(url, settings, app)


@pytest.fixture(scope="session")
def open_server(moe_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The MoE tiny model with no authentication."""
    tmp = tmp_path_factory.mktemp("open")
    settings = make_settings(tmp)
    app = create_app(settings, engine=moe_engine)
    for url in run_server(app):
        yield LiveServer(url, settings, app)


@pytest.fixture
def alice() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['alice']}"}
