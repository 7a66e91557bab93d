"""Image preprocessing for the Qwen3-VL vision encoder.

``preprocess_image`` equals transformers' ``Qwen2VLImageProcessorPil`` bit for
bit (same Pillow bicubic resize on uint8, same float32 arithmetic, same patch
order; see ``patches``) while skipping its full-size intermediate arrays.
Large images are normalised in horizontal bands on the shared media pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vlserve.media.image import to_rgb
from vlserve.media.patches import new_patch_buffer, write_frame
from vlserve.media.settings import VisionSettings
from vlserve.media.sizing import count_image_tokens, image_target_size, smart_resize
from vlserve.media.threads import heavy_pool, media_pool, pool_size

__all__ = ["ImageFeatures", "count_image_tokens", "preprocess_image", "smart_resize"]


@dataclass
class ImageFeatures:
    """One image, ready for the vision encoder.

    ``pixel_values`` is ``(grid_h*grid_w, 3*temporal_patch*patch*patch)`` float32,
    rows in the encoder's merge order.
    """

    pixel_values: np.ndarray
    grid_thw: tuple[int, int, int]  # (1, grid_h, grid_w), counted in patches
    original_size: tuple[int, int]  # (width, height)
    resized_size: tuple[int, int]  # (width, height)
    merge_size: int

    @property
    def num_tokens(self) -> int:
        """Number of ``<|image_pad|>`` tokens: ``t*h*w // merge_size**2``."""
        t, h, w = self.grid_thw
        return t * h * w // (self.merge_size * self.merge_size)


def preprocess_image(image: Image.Image, settings: VisionSettings) -> ImageFeatures:
    """Resize, normalise and patch one image (any mode; converted to RGB first)."""
    rgb = to_rgb(image)
    width, height = rgb.size
    target = image_target_size(width, height, settings)
    # Pillow returns a plain copy for an unchanged size, so skipping the call is equal.
    resized = rgb if target == rgb.size else _resize(rgb, target, settings)
    pixels = np.asarray(resized)  # (H, W, 3) uint8
    grid_h, grid_w = target[1] // settings.patch_size, target[0] // settings.patch_size
    out = new_patch_buffer(1, grid_h, grid_w, settings)
    _write_parallel(out[0], pixels, settings)
    return ImageFeatures(
        pixel_values=out.reshape(grid_h * grid_w, -1),
        grid_thw=(1, grid_h, grid_w),
        original_size=(width, height),
        resized_size=target,
        merge_size=settings.merge_size,
    )


def _resize(rgb: Image.Image, target: tuple[int, int], settings: VisionSettings) -> Image.Image:
    """Bicubic resize; a large source (tenths of a second of CPU) resizes on a niced thread, so it
    takes the CPU only when the engine and small requests leave it free (same result either way)."""
    if rgb.width * rgb.height <= settings.isolate_image_pixels:
        return rgb.resize(target, Image.Resampling.BICUBIC)
    return heavy_pool(settings.heavy_nice).submit(rgb.resize, target, Image.Resampling.BICUBIC).result()


# Below this many pixels the thread hand-off costs more than it saves.
_PARALLEL_MIN_PIXELS = 4 << 20


def _write_parallel(group: np.ndarray, pixels: np.ndarray, settings: VisionSettings) -> None:
    """``write_frame`` for one image, split into row bands across the media pool."""
    workers = pool_size()
    bands = group.shape[0]
    if workers == 1 or bands < 2 or pixels.shape[0] * pixels.shape[1] < _PARALLEL_MIN_PIXELS:
        write_frame(group, pixels, slice(None), settings)
        return
    rows = settings.merge_size * settings.patch_size
    step = -(-bands // workers)
    jobs = [
        media_pool().submit(
            write_frame, group[b : b + step], pixels[b * rows : (b + step) * rows], slice(None), settings
        )
        for b in range(0, bands, step)
    ]
    for job in jobs:
        job.result()
