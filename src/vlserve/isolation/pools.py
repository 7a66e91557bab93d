"""The server's isolated pools: PDF rendering, video probing and decoding, heavy image decoding.

They are separate so a slow PDF never delays a video or an image and the reverse, and none shares threads
with image decoding (``vlserve.media.threads``) or the event loop's default executor. Both are
created on first use with the limits of :func:`configure` (``config.Limits`` defaults until the
server calls it at start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from vlserve.config import Limits
from vlserve.isolation.pool import WorkerLimits, WorkerPool

__all__ = ["configure", "document_pool", "image_pool", "video_pool"]


@dataclass(frozen=True)
class _Kind:
    """One pool: its ``(workers, seconds, memory bytes)`` from the limits, and what workers import."""

    limits: Callable[[Limits], tuple[int, float, int]]
    preload: tuple[str, ...]
    cpu_factor: float = 1.0  # CPU seconds allowed per wall second


_KINDS = {
    "pdf": _Kind(lambda lim: (lim.pdf_workers, lim.pdf_timeout_seconds, lim.pdf_memory_bytes),
                 ("pypdfium2", "PIL.Image", "vlserve.inputs.documents")),
    # FFmpeg decodes with several threads: CPU time may run ahead of the wall clock.
    "video": _Kind(lambda lim: (lim.video_workers, lim.video_timeout_seconds, lim.video_memory_bytes),
                   ("av", "numpy", "PIL.Image", "vlserve.media.video"), cpu_factor=4.0),
    "image": _Kind(lambda lim: (lim.image_workers, lim.image_timeout_seconds, lim.image_memory_bytes),
                   ("numpy", "PIL.Image", "vlserve.media.isolated")),
}

_lock = threading.Lock()
_limits = Limits()
_pools: dict[str, WorkerPool] = {}


def configure(limits: Limits, *, warm: bool = False) -> None:
    """Use ``limits`` for the pools from now on (running pools are closed and rebuilt lazily).

    ``warm=True`` (the server at start-up) starts the worker processes at once, in the background,
    so the first PDF or video does not wait for a worker to import its libraries.
    """
    global _limits
    with _lock:
        if limits == _limits and not warm:
            return
        _limits = limits
        old = list(_pools.values())
        _pools.clear()
    for pool in old:
        pool.close()
    if warm:  # heavy images are rare: their workers start with the first one
        document_pool().warm()
        video_pool().warm()


def _pool(name: str) -> WorkerPool:
    with _lock:
        pool = _pools.get(name)
        if pool is None:
            kind = _KINDS[name]
            workers, seconds, memory = kind.limits(_limits)
            pool = _pools[name] = WorkerPool(name, workers, WorkerLimits(
                wall_seconds=seconds, cpu_seconds=seconds * kind.cpu_factor, memory_bytes=memory,
                preload=kind.preload, nice=_limits.worker_nice))
        return pool


def document_pool() -> WorkerPool:
    """Workers rendering PDFs (``pdf_workers``, ``pdf_timeout_seconds``, ``pdf_memory_bytes``)."""
    return _pool("pdf")


def video_pool() -> WorkerPool:
    """Workers probing and decoding videos (``video_workers``, ``video_timeout_seconds``, ``video_memory_bytes``)."""
    return _pool("video")


def image_pool() -> WorkerPool:
    """Workers decoding heavy images (``image_workers``, ``image_timeout_seconds``, ``image_memory_bytes``):
    images above ``image_isolate_pixels`` and 16-bit or float ones (see ``vlserve.media.isolated``)."""
    return _pool("image")
