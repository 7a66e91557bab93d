"""Real vlserve servers on loopback (uvicorn in a thread), sharing the session's tiny engines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.helpers import KEYS, LiveServer, make_settings, run_server
from vlserve.api.app import create_app
from vlserve.config import ApiKey
from vlserve.service.auth import hash_key


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
