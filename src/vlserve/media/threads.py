"""The small thread pools of media preprocessing: frames (``media_pool``) and images (``image_pool``).

Pillow's resize, PyAV's colour conversion and numpy's copies release the GIL,
so a few threads overlap frame preparation with decoding. The pool is created
on first use and sized to the machine (at most 4), so concurrent requests queue
instead of multiplying threads. Jobs submitted here must never wait on other
jobs of this pool (that could deadlock a full pool).

Image decoding has a pool of its own (``image_pool``): it never queues behind video frames,
PDF renders (which run in worker processes, see ``vlserve.isolation``) or anything else using
the event loop's default executor.

Heavy pixel work of the server process (resizing images above ``isolate_image_pixels``) runs on
``heavy_pool``, whose threads are *niced*: on a busy machine the kernel gives the CPU to the
engine, the event loop and small images first, so a few huge inputs slow down only themselves.
(Linux applies niceness per thread; an unprivileged process can raise a thread's niceness but
never lower it again, which is why heavy jobs get threads of their own.)
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["heavy_pool", "image_pool", "media_pool", "pool_size"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_images: ThreadPoolExecutor | None = None
_heavy: dict[int, ThreadPoolExecutor] = {}


def pool_size() -> int:
    """Worker threads in the shared pool: the usable CPU count, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def media_pool() -> ThreadPoolExecutor:
    """The shared pool, created on first call."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=pool_size(), thread_name_prefix="vlserve-media")
        return _pool


def image_pool() -> ThreadPoolExecutor:
    """The pool decoding request images (``load_image_async``), created on first call."""
    global _images
    with _lock:
        if _images is None:
            _images = ThreadPoolExecutor(max_workers=pool_size(), thread_name_prefix="vlserve-image")
        return _images


def heavy_pool(nice: int) -> ThreadPoolExecutor:
    """A pool of threads running at niceness ``nice`` (one pool per value, created on first call)."""
    with _lock:
        pool = _heavy.get(nice)
        if pool is None:
            pool = _heavy[nice] = ThreadPoolExecutor(max_workers=pool_size(), thread_name_prefix=f"vlserve-heavy{nice}",
                                                     initializer=_renice, initargs=(nice,))
        return pool


def _renice(nice: int) -> None:
    """Raise this thread's niceness by ``nice`` (Linux: setpriority on the thread id)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass  # niceness is a preference: a platform refusing it still decodes correctly
