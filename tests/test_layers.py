"""The package layering of shared/ARCHITECTURE.md, as import-linter contracts in pyproject.toml: a layer
imports only the layers below it, engines and libraries never see the HTTP request models, and the
test doubles under ``vlserve.testing`` are never imported by the product. Lazy imports inside
functions count too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout
