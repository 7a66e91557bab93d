"""What a request will cost, read from its inputs' headers before anything is decoded.

Each input is probed (image headers; PDF page boxes and video streams in the isolated worker
pools) and priced as the peak bytes its preparation holds and the visual tokens the model will
read. The estimates are upper bounds of what the decoders are allowed to do under the configured
limits, so the budgets in :mod:`vlserve.scheduling.budget` bound real memory, not hopes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from vlserve.config import Limits
from vlserve.inputs import DocumentProbe, Source, probe_pdf_isolated
from vlserve.media import (
    ImageProbe,
    VideoProbe,
    VisionSettings,
    count_image_tokens,
    count_video_tokens,
    probe_image,
)
from vlserve.media.threads import image_pool
from vlserve.media.video import probe_video_async
from vlserve.scheduling import Cost
from vlserve.schemas import DocumentInput, VideoInput

#: float32 pixel values for the vision tower: 3 channels x temporal patch 2 x 4 bytes per pixel.
FEATURE_BYTES_PER_PIXEL = 24
RGB = 3


@dataclass
class Priced:
    """The probes of one request's inputs and their total cost."""

    cost: Cost
    images: list[ImageProbe]
    documents: list[DocumentProbe]
    videos: list[VideoProbe]


async def price(images: list[Source], videos: list[tuple[VideoInput, Source]],
                documents: list[tuple[DocumentInput, Source]], *, vision: VisionSettings, limits: Limits,
                fps: float | None) -> Priced:
    """Probe every input (refusing bad ones with the decoders' own codes) and add up the cost."""
    loop = asyncio.get_running_loop()
    image_probes = await asyncio.gather(*(
        loop.run_in_executor(image_pool(), probe_image, s.data, vision) for s in images))
    doc_probes = await asyncio.gather(*(
        probe_pdf_isolated(s.data, max_pages=limits.max_pdf_pages, first_page=d.first_page, last_page=d.last_page,
                           policy=limits.pdf_policy) for d, s in documents))
    video_probes = await asyncio.gather(*(probe_video_async(s.data, vision) for _, s in videos))
    cost = Cost(memory_bytes=sum(len(s.data) for s in (*images, *(s for _, s in (*videos, *documents)))))
    for probe in image_probes:
        cost += image_cost(probe, vision)
    for doc_probe in doc_probes:
        cost += document_cost(doc_probe, vision, limits)
    for (spec, _), video_probe in zip(videos, video_probes, strict=True):
        cost += video_cost(video_probe, spec, vision, fps)
    return Priced(cost, list(image_probes), list(doc_probes), list(video_probes))


def image_cost(probe: ImageProbe, vision: VisionSettings) -> Cost:
    """Decoding peak, the RGB image kept for the request, and its vision tensor."""
    tokens = count_image_tokens(probe.decode_width, probe.decode_height, vision)
    resized = tokens * vision.factor * vision.factor
    return Cost(probe.peak_bytes + resized * (RGB + FEATURE_BYTES_PER_PIXEL), tokens)


def document_cost(probe: DocumentProbe, vision: VisionSettings, limits: Limits) -> Cost:
    """Rendered pages (their arrays cross from the worker, then become images) and their tensors."""
    rendered = probe.render_pixels(limits.pdf_dpi, limits.pdf_max_page_pixels, limits.pdf_max_document_pixels)
    tokens = 0
    scale = limits.pdf_dpi / 72.0
    for width_pt, height_pt in probe.page_sizes:
        width, height = max(1, round(width_pt * scale)), max(1, round(height_pt * scale))
        shrink = math.sqrt(min(1.0, limits.pdf_max_page_pixels / (width * height)))
        tokens += count_image_tokens(max(1, int(width * shrink)), max(1, int(height * shrink)), vision)
    resized = tokens * vision.factor * vision.factor
    return Cost(rendered * RGB * 2 + resized * (RGB + FEATURE_BYTES_PER_PIXEL), tokens)


def video_cost(probe: VideoProbe, spec: VideoInput, vision: VisionSettings, fps: float | None) -> Cost:
    """The sampled frames (one decoded at full size at a time, kept resized) and their tensor."""
    duration = probe.duration if probe.duration is not None else vision.max_video_seconds
    end = min(duration, spec.end) if spec.end is not None else duration
    clip = max(0.0, min(end - (spec.start or 0.0), vision.max_video_seconds))
    frames = max(vision.temporal_patch_size, min(vision.video_max_frames,
                                                 math.ceil(clip * (fps or vision.video_fps)) + 1))
    frames += frames % vision.temporal_patch_size
    tokens = count_video_tokens(frames, probe.width, probe.height, vision)
    per_frame = tokens * vision.factor * vision.factor * vision.temporal_patch_size // frames
    full_frame = probe.width * probe.height * RGB
    return Cost(4 * full_frame + frames * per_frame * (RGB + FEATURE_BYTES_PER_PIXEL // 2), tokens)
