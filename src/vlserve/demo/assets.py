"""Where the page's files are: plain HTML, CSS and JavaScript, plus vendored, licensed bundles."""

from __future__ import annotations

from pathlib import Path

#: The page (``index.html``, its modules and ``vendor/``), served by ``vlserve demo`` at ``/`` and
#: by ``vlserve serve`` at ``/ui/``.
STATIC_DIR = Path(__file__).parent / "static"
