"""A long-video window's frames as timestamped images, for engines that take no decoded video.

An engine behind an HTTP protocol (vLLM, SGLang, another vlserve over OpenAI chat completions)
accepts a video only as an encoded file, whose timestamps it computes itself from 0; a long-video
window's frames sampled by seeking, with their absolute times, cannot travel that way. They travel
instead as images, each after Qwen3-VL's own ``<t seconds>`` marker text at its absolute time: one
image per temporal group of the window (the group's first frame, at the group's mean time, exactly
the places and times the video path's markers name), at the size the window's frames were sampled
at, so each costs what one group costs as video unless the model's image size limits raise it;
then the images are thinned evenly to stay within the window's token budget and the upstream's
limit of images per request (``remote.max_images``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlserve.media.settings import VisionSettings
from vlserve.media.sizing import count_image_tokens

if TYPE_CHECKING:
    from PIL import Image

    from vlserve.media.longvideo import SampledWindow

__all__ = ["TimedImage", "window_images"]


@dataclass(frozen=True)
class TimedImage:
    """One image of a window: ``time`` in seconds from the start of the video; ``tokens`` it costs."""

    time: float
    image: Image.Image
    tokens: int


def window_images(sampled: SampledWindow, settings: VisionSettings, token_budget: int,
                  max_images: int | None = None) -> list[TimedImage]:
    """The window's frames as at most ``token_budget`` tokens and ``max_images`` timestamped images
    (at least one image; none when the window has no frames), in time order."""
    from PIL import Image

    frames, times, tps = sampled.frames, sampled.times, settings.temporal_patch_size
    if not frames:
        return []
    groups = [(k, min(k + tps, len(frames))) for k in range(0, len(frames), tps)]
    height, width = frames[0].shape[:2]
    per_image = count_image_tokens(width, height, settings)
    keep = max(1, min(len(groups), token_budget // max(per_image, 1), max_images or len(groups)))
    if keep < len(groups):  # evenly across the window, its first and last groups included
        picks = [round(i * (len(groups) - 1) / (keep - 1)) for i in range(keep)] if keep > 1 else [0]
        groups = [groups[i] for i in picks]
    return [TimedImage(sum(times[lo:hi]) / (hi - lo), Image.fromarray(frames[lo]), per_image)
            for lo, hi in groups]
