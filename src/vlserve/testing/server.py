"""An app served by a real uvicorn on a free loopback port, in a thread of the calling process
(so it shares that process's engines): for tests of code built on vlserve, and vlserve's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def iter_server(app: Any, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` (lifespan included); yields its URL once, then stops the server when resumed
    or closed (``for url in iter_server(app): ...`` or as a pytest fixture's body)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


#: :func:`iter_server` as a context manager: ``with serving(app) as url: ...``.
serving = contextmanager(iter_server)
