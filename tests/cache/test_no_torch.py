"""``import vlserve.cache`` loads no torch (a gateway-only install has none). The package's place in the
layering is checked with every other package's in tests/test_layers.py."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cache_package_loads_no_torch() -> None:
    code = "import sys, vlserve.cache; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
