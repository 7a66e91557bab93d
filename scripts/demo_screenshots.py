"""Regenerate the web demo's screenshots in docs/images/ (the ones docs/demo.md shows).

They are taken by the browser tests themselves (tests/demo/test_page.py), so each picture is a
page state that a passing test has checked: this runs those tests with VLSERVE_DEMO_SCREENSHOTS
set. Needs Debian's chromium and the 'demo' extra, like the tests.

    .venv/bin/python scripts/demo_screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["streams", "grounding", "multiview", "1001", "batch", "chart"]


def main() -> int:
    out = ROOT / "docs" / "images"
    env = {**os.environ, "VLSERVE_DEMO_SCREENSHOTS": str(out)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/demo/test_page.py",
               "-k", " or ".join(TESTS)]
    code = subprocess.call(command, cwd=ROOT, env=env)
    for path in sorted(out.glob("demo-*.png")):
        print(path.relative_to(ROOT))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
