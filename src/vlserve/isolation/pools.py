"""The server's isolated pools: PDF rendering, video probing and decoding, heavy image decoding.

They are separate so a slow PDF never delays a video or an image and the reverse, and none shares threads
with image decoding (``vlserve.media.threads``) or the event loop's default executor. Both are
created on first use with the limits of :func:`configure` (``config.Limits`` defaults until the
server calls it at start-up).
"""

from __future__ import annotations

import threading

from vlserve.config import Limits
from vlserve.isolation.pool import WorkerLimits, WorkerPool

__all__ = ["configure", "document_pool", "image_pool", "video_pool"]

_lock = threading.Lock()
_limits = Limits()
_documents: WorkerPool | None = None
_videos: WorkerPool | None = None
_images: WorkerPool | None = None

_DOCUMENT_PRELOAD = ("pypdfium2", "PIL.Image", "vlserve.inputs.documents")
_VIDEO_PRELOAD = ("av", "numpy", "PIL.Image", "vlserve.media.video")
_IMAGE_PRELOAD = ("numpy", "PIL.Image", "vlserve.media.isolated")


def configure(limits: Limits, *, warm: bool = False) -> None:
    """Use ``limits`` for the pools from now on (running pools are closed and rebuilt lazily).

    ``warm=True`` (the server at start-up) starts the worker processes at once, in the background,
    so the first PDF or video does not wait for a worker to import its libraries.
    """
    global _limits, _documents, _videos, _images
    with _lock:
        if limits == _limits and not warm:
            return
        _limits = limits
        old = [p for p in (_documents, _videos, _images) if p is not None]
        _documents = _videos = _images = None
    for pool in old:
        pool.close()
    if warm:  # heavy images are rare: their workers start with the first one
        document_pool().warm()
        video_pool().warm()


def document_pool() -> WorkerPool:
    """Workers rendering PDFs (``pdf_workers``, ``pdf_timeout_seconds``, ``pdf_memory_bytes``)."""
    global _documents
    with _lock:
        if _documents is None:
            _documents = WorkerPool(
                "pdf",
                _limits.pdf_workers,
                WorkerLimits(
                    wall_seconds=_limits.pdf_timeout_seconds,
                    cpu_seconds=_limits.pdf_timeout_seconds,
                    memory_bytes=_limits.pdf_memory_bytes,
                    preload=_DOCUMENT_PRELOAD,
                    nice=_limits.worker_nice,
                ),
            )
        return _documents


def video_pool() -> WorkerPool:
    """Workers probing and decoding videos (``video_workers``, ``video_timeout_seconds``, ``video_memory_bytes``)."""
    global _videos
    with _lock:
        if _videos is None:
            _videos = WorkerPool(
                "video",
                _limits.video_workers,
                WorkerLimits(
                    wall_seconds=_limits.video_timeout_seconds,
                    # FFmpeg decodes with several threads: CPU time may run ahead of the wall clock.
                    cpu_seconds=_limits.video_timeout_seconds * 4,
                    memory_bytes=_limits.video_memory_bytes,
                    preload=_VIDEO_PRELOAD,
                    nice=_limits.worker_nice,
                ),
            )
        return _videos


def image_pool() -> WorkerPool:
    """Workers decoding heavy images (``image_workers``, ``image_timeout_seconds``, ``image_memory_bytes``):
    images above ``image_isolate_pixels`` and 16-bit or float ones (see ``vlserve.media.isolated``)."""
    global _images
    with _lock:
        if _images is None:
            _images = WorkerPool(
                "image",
                _limits.image_workers,
                WorkerLimits(
                    wall_seconds=_limits.image_timeout_seconds,
                    cpu_seconds=_limits.image_timeout_seconds,
                    memory_bytes=_limits.image_memory_bytes,
                    preload=_IMAGE_PRELOAD,
                    nice=_limits.worker_nice,
                ),
            )
        return _images
