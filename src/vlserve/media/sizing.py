"""Target sizes and token counts: pure integer arithmetic, no pixels.

``smart_resize`` is the Qwen2-VL/Qwen3-VL image rule and ``video_smart_resize``
the Qwen3-VL video rule (with the temporal factor); both follow transformers'
``qwen2_vl/image_processing_pil_qwen2_vl.py`` and
``qwen3_vl/video_processing_qwen3_vl.py`` step for step, including Python's
round-half-to-even, because one pixel of difference changes the token count.

The per-frame video budget is transformers' ``cap_pixels_per_frame=True`` rule
(the rule of qwen-vl-utils, which the model was trained with)::

    pixels_per_frame = max(min(video_max_pixels, video_total_pixels // n),
                           int(video_min_pixels * 1.05))
    h, w = video_smart_resize(n, height, width, factor=factor,
                              temporal_factor=temporal_patch_size,
                              min_pixels=video_min_pixels,
                              max_pixels=pixels_per_frame * n)

where ``n`` is the number of sampled frames before padding to a multiple of the
temporal patch size.
"""

from __future__ import annotations

import math

from vlserve.errors import ImageError, VideoError
from vlserve.media.settings import VisionSettings

__all__ = [
    "count_image_tokens",
    "count_video_tokens",
    "image_target_size",
    "smart_resize",
    "video_frame_pixel_budget",
    "video_smart_resize",
    "video_target_size",
]

MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The (height, width) an image is resized to before patching.

    Both sides become multiples of ``factor``, the area lands in
    ``[min_pixels, max_pixels]`` and the aspect ratio is kept as closely as
    possible. Raises ImageError for aspect ratios above 200 (the model's limit).
    """
    if height <= 0 or width <= 0:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    _check_aspect(height, width, ImageError, "image")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_smart_resize(
    num_frames: int,
    height: int,
    width: int,
    *,
    factor: int,
    temporal_factor: int,
    min_pixels: int,
    max_pixels: int,
) -> tuple[int, int]:
    """The per-frame (height, width) of a video of ``num_frames`` sampled frames.

    Like ``smart_resize`` but ``min_pixels``/``max_pixels`` bound the whole clip
    (``t_bar * h * w`` with ``t_bar`` the frame count rounded to the temporal
    factor), and frames with a side below ``factor`` are first scaled up.
    ``num_frames`` below ``temporal_factor`` is counted as ``temporal_factor``
    (the frames are padded to it anyway) where transformers would refuse.
    """
    if height <= 0 or width <= 0:
        raise VideoError(f"The video frames have no pixels ({width}x{height}).")
    num_frames = max(num_frames, temporal_factor)
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height = int(height * scale)
        width = int(width * scale)
    _check_aspect(height, width, VideoError, "video")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_frame_pixel_budget(num_frames: int, settings: VisionSettings) -> int:
    """Pixels one frame may keep when ``num_frames`` frames share the clip budget."""
    share = settings.video_total_pixels // max(num_frames, 1)
    return max(min(settings.video_max_pixels, share), int(settings.video_min_pixels * 1.05))


def image_target_size(width: int, height: int, settings: VisionSettings) -> tuple[int, int]:
    """(width, height) an image of this size is resized to."""
    h, w = smart_resize(
        height, width, factor=settings.factor, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
    )
    return w, h


def video_target_size(num_frames: int, width: int, height: int, settings: VisionSettings) -> tuple[int, int]:
    """(width, height) every frame of a clip of ``num_frames`` sampled frames is resized to."""
    budget = video_frame_pixel_budget(num_frames, settings)
    h, w = video_smart_resize(
        num_frames,
        height,
        width,
        factor=settings.factor,
        temporal_factor=settings.temporal_patch_size,
        min_pixels=settings.video_min_pixels,
        max_pixels=budget * max(num_frames, settings.temporal_patch_size),
    )
    return w, h


def count_image_tokens(width: int, height: int, settings: VisionSettings) -> int:
    """Number of ``<|image_pad|>`` tokens an image of this size costs, without decoding it."""
    w, h = image_target_size(width, height, settings)
    return (h // settings.factor) * (w // settings.factor)


def count_video_tokens(num_frames: int, width: int, height: int, settings: VisionSettings) -> int:
    """Number of ``<|video_pad|>`` tokens for ``num_frames`` sampled frames of this size."""
    w, h = video_target_size(num_frames, width, height, settings)
    groups = -(-max(num_frames, 1) // settings.temporal_patch_size)
    return groups * (h // settings.factor) * (w // settings.factor)


def _check_aspect(height: int, width: int, error: type[ImageError] | type[VideoError], what: str) -> None:
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise error(
            f"The {what} is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1; "
            f"the model accepts at most {MAX_ASPECT_RATIO}:1. Crop or pad it and try again."
        )
