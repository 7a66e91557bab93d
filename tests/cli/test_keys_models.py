"""``keys new`` prints a TOML config entry; ``models show`` never downloads."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlserve.cli.main import app
from vlserve.config import Settings
from vlserve.service.auth import KeyRing, hash_key

runner = CliRunner()
VLSERVE = str(Path(sys.executable).with_name("vlserve"))


def test_keys_new_prints_a_toml_entry_and_the_key_apart(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "new", "alice"])
    assert result.exit_code == 0, result.output
    key = result.stderr.strip().rsplit(" ", 1)[-1]
    assert key not in result.stdout  # `keys new alice >> vlserve.toml` stores the hash only
    entry = tomllib.loads(result.stdout)
    assert entry == {"auth": {"keys": [{"id": "alice", "sha256": hash_key(key)}]}}
    # Appended to a config that already has a key, it is one more entry that authenticates the key.
    config = tmp_path / "vlserve.toml"
    config.write_text('port = 9000\n\n[[auth.keys]]\nid = "bob"\nsha256 = "' + "0" * 64 + '"\n\n')
    with config.open("a") as fh:
        fh.write(result.stdout)
    settings = Settings.load(config)
    assert [k.id for k in settings.auth.keys] == ["bob", "alice"]
    assert asyncio.run(KeyRing(settings.auth.keys, 60).authenticate(f"Bearer {key}", "127.0.0.1")) == "alice"


class CountingHub:
    """A loopback stand-in for the hub endpoint: counts every request a download would make."""

    def __init__(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hub.hits += 1
                self.send_error(404)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.hits = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def hub() -> Iterator[CountingHub]:
    counting = CountingHub()
    yield counting
    counting.httpd.shutdown()


def show(model: str, hub: CountingHub, cache: Path) -> subprocess.CompletedProcess[str]:
    """``vlserve models show`` as a user runs it, with the hub endpoint on loopback (any download
    attempt is counted there) and the Hugging Face cache in ``cache``."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache)}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([VLSERVE, "models", "show", model], capture_output=True, text=True, timeout=120, env=env)


def test_models_show_never_downloads(hub: CountingHub, tmp_path: Path) -> None:
    result = show("acme/absent-vl", hub, tmp_path / "hub")
    assert result.returncode == 2
    output = " ".join((result.stdout + result.stderr).split())
    assert "'acme/absent-vl' is not downloaded" in output and "never downloads" in output
    assert hub.hits == 0


def test_models_show_reads_the_local_cache(hub: CountingHub, tiny_dir: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--acme--tiny-vl" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    result = show("acme/tiny-vl", hub, tmp_path / "hub")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == str(snapshot) and json.loads(result.stdout)["moe"] is False
    assert hub.hits == 0
