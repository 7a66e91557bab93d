"""Session fixtures: the tiny Qwen3-VL checkpoints and engines are built once per test session.

The engines run where ``VLSERVE_TEST_DEVICE`` / ``VLSERVE_TEST_DTYPE`` say (default ``auto``:
the GPU when there is one, float32 on CPU), so the runtime tests double as a GPU check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jobs.helpers import start_redis


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """State of servers that tests start without naming paths goes to a temporary data directory,
    never into the user's own (``~/.local/share/vlserve``) or the working directory."""
    path = tmp_path_factory.mktemp("data")
    before = os.environ.get("VLSERVE_DATA_DIR")
    os.environ["VLSERVE_DATA_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("VLSERVE_DATA_DIR", None)
    else:
        os.environ["VLSERVE_DATA_DIR"] = before


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlserve.runtime.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlserve.runtime.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-moe", moe=True)


@pytest.fixture(scope="session")
def engine(tiny_dir: Path) -> Iterator[object]:
    from vlserve.runtime.local import LocalEngine

    yield LocalEngine(tiny_dir, name="tiny", **_placement())


@pytest.fixture(scope="session")
def moe_engine(tiny_moe_dir: Path) -> Iterator[object]:
    from vlserve.runtime.local import LocalEngine

    yield LocalEngine(tiny_moe_dir, name="tiny-moe", **_placement())


def _placement() -> dict[str, str]:
    env = os.environ.get
    return {"device": env("VLSERVE_TEST_DEVICE", "auto"), "dtype": env("VLSERVE_TEST_DTYPE", "auto")}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server on 127.0.0.1 and a random port, append-only, in a temporary directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server): Redis job store untested")
    proc, port = start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
