"""Heavy images decode in the isolated image workers, not in the server's threads.

Decoding is cheap for ordinary pictures and expensive for a few shapes anyone can send in a small
file: a 32-bit float TIFF of 4000x4000 zeros is 124 KB and costs about 0.6 s of CPU to decode
and scale to 8 bits; a 60-megapixel PNG costs more. In a thread of the server that CPU is taken
from the engine and from everyone's small images. So ``load_image_async`` decodes an image in a
worker process of :func:`vlserve.isolation.image_pool` when its header says it is *heavy*
(:func:`is_heavy`: more than ``isolate_image_pixels`` decoded pixels, or 16-bit/float samples).
The workers run niced (``limits.worker_nice``), under hard CPU-time, memory and wall-clock limits
(``image_timeout_seconds``, ``image_memory_bytes``); a decode that passes one fails alone with
1001. The decoded RGB pixels come back as one out-of-band buffer (no pickle copy) and become the
same Pillow image ``load_image`` returns in-process, so answers do not depend on where it ran.
"""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image

from vlserve.errors import ImageError
from vlserve.isolation import IsolationError, WorkerPool, image_pool
from vlserve.media.image import ImageProbe, ImageSource, load_image, probe_image
from vlserve.media.settings import VisionSettings
from vlserve.media.threads import image_pool as thread_pool

__all__ = ["decode_rgb", "is_heavy", "load_image_async", "load_image_isolated"]

# Pillow modes with more than 8 bits per sample: converted to 8 bits block by block, slowly.
_HIGH_DEPTH = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")

#: Still 8-bit images up to this size (decoded pixels, as their header declares; encoded bytes)
#: decode on the event loop: a thumbnail decodes in a fraction of a millisecond, less than the hop
#: to a decoding thread and back, which every request would otherwise wait for.
INLINE_PIXELS = 128 * 128
INLINE_BYTES = 64 * 1024

TOO_HEAVY = ("The image could not be decoded within the server's limits for one image (time, memory); "
             "send it smaller, or as an 8-bit JPEG or PNG.")


def is_heavy(probe: ImageProbe, settings: VisionSettings) -> bool:
    """Whether the image ``probe`` describes decodes in an isolated worker rather than a thread."""
    return probe.decode_pixels > settings.isolate_image_pixels or probe.mode in _HIGH_DEPTH


def decode_rgb(data: bytes, settings: VisionSettings) -> np.ndarray:
    """``load_image`` as an ``(H, W, 3)`` uint8 array (runs inside a worker)."""
    return np.asarray(load_image(data, settings))


async def load_image_isolated(data: bytes, settings: VisionSettings, pool: WorkerPool | None = None) -> Image.Image:
    """``load_image(data)`` in a worker of ``pool`` (default: the server's image pool).

    Errors are ``load_image``'s; a decode stopped by its worker's limits (or crashing it) raises
    ImageError (1001) with one fixed message.
    """
    try:
        pixels = await (pool or image_pool()).arun(decode_rgb, data, settings)
    except IsolationError as err:
        raise ImageError(TOO_HEAVY, reason=err.reason) from err
    return Image.fromarray(pixels, "RGB")


async def load_image_async(source: ImageSource, settings: VisionSettings) -> Image.Image:
    """``load_image`` on the image decoding pool: never queued behind PDFs, videos or the default executor.

    Thumbnails (``INLINE_PIXELS``, ``INLINE_BYTES``) decode at once on the caller's loop. Encoded
    bytes whose header says they are heavy (:func:`is_heavy`: above
    ``isolate_image_pixels``, or 16-bit/float) decode in a niced worker process instead, so they
    neither hold this pool's few threads nor take the CPU from the engine.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(source, bytes):
        return await loop.run_in_executor(thread_pool(), load_image, source, settings)
    if len(source) <= INLINE_BYTES:
        probe = probe_image(source, settings)  # the header only: what load_image would refuse, it refuses
        if probe.decode_pixels <= INLINE_PIXELS and probe.frames == 1 and probe.mode not in _HIGH_DEPTH:
            return load_image(source, settings)
    light = await loop.run_in_executor(thread_pool(), _load_light, source, settings)
    if light is not None:
        return light
    return await load_image_isolated(source, settings)


def _load_light(data: bytes, settings: VisionSettings) -> Image.Image | None:
    """``load_image(data)``, or None without decoding anything when the image is heavy."""
    if is_heavy(probe_image(data, settings), settings):
        return None
    return load_image(data, settings)
