"""The web demo: a page for trying every task in a browser, offline, against any vlserve server.

``vlserve demo --server URL`` serves the page with a pass-through to the server's task API
(:func:`create_demo_app`); ``vlserve serve`` also serves the same page at ``/ui/``. The page is
plain HTML, CSS and JavaScript with no build step and nothing fetched from the internet; the 3D
viewer is Google's ``<model-viewer>`` vendored under ``static/vendor`` with its licences.

This package speaks to the server only over HTTP; it imports nothing of the server's.
"""

from __future__ import annotations

from vlserve.demo.app import create_demo_app
from vlserve.demo.assets import STATIC_DIR

__all__ = ["STATIC_DIR", "create_demo_app"]
