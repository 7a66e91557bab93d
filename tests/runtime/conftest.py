"""Fixtures of the remote-engine tests: one real upstream (``vlserve serve`` with the tiny model)
shared by the whole session, started on first use (it takes a while on a small machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.upstreams import vlserve_upstream


@pytest.fixture(scope="session")
def upstream(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a ``vlserve serve`` process with the tiny model on 127.0.0.1."""
    with vlserve_upstream(tiny_dir, tmp_path_factory.mktemp("upstream")) as (url, _):
        yield url
