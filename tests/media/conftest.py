"""Fixtures for media tests: synthetic images and videos, and the reference pipelines.

The references are transformers' own code where it runs without torchvision
(``Qwen2VLImageProcessorPil``; the Qwen3-VL video processor's ``sample_frames``
and ``patchify``) and, where it does not, the straightforward path the video
processor documents: decode every frame with PyAV, take the sampled ones,
resize each with Pillow bicubic, rescale/normalise as the image processor does.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import av
import numpy as np
import pytest
from PIL import Image

from vlserve.media import VisionSettings

FIRST_LEVEL = 8
LEVEL_STEP = 3


def frame_level(index: int) -> int:
    """Grey level of the solid left half of synthetic video frame ``index`` (index < 80)."""
    return FIRST_LEVEL + LEVEL_STEP * index


def noise_image(width: int, height: int, seed: int) -> np.ndarray:
    """``(height, width, 3)`` uint8: gradients plus deterministic noise (resizing must matter)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            x * 255 // max(width - 1, 1),
            y * 255 // max(height - 1, 1),
            (x + y) * 255 // max(width + height - 2, 1),
        ],
        axis=-1,
    )
    return np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)


def _video_frame(index: int, width: int, height: int) -> np.ndarray:
    """Left half solid grey ``frame_level(index)``; right half a moving texture."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:, : width // 2] = frame_level(index) % 256
    y, x = np.mgrid[0:height, 0 : width - width // 2]
    frame[:, width // 2 :] = (
        ((x * 7 + y * 3 + index * 5) % 256)[..., None] * np.array([1, 0.5, 0.25])
    ).astype(np.uint8)
    return frame


def encode_video(
    fmt: str,
    codec: str,
    *,
    width: int = 96,
    height: int = 64,
    fps: int = 10,
    frames: int = 30,
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rotation: int | None = None,
) -> bytes:
    """A synthetic video: frame i has ``frame_level(i)`` on its left half."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_video_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def slot_levels(pixel_values: np.ndarray, grid_thw: tuple[int, int, int], temporal: int) -> list[int]:
    """Grey level of the top-left patch, red channel, of every frame slot (decoded back from floats)."""
    t, h, w = grid_thw
    patch = pixel_values.shape[1] // (3 * temporal)
    levels = []
    for group in range(t):
        row = pixel_values[group * h * w]
        for slot in range(temporal):
            values = row[slot * patch : (slot + 1) * patch]  # channel 0
            levels.append(round(float(((values * 0.5 + 0.5) * 255).mean())))
    return levels


def levels_to_indices(levels: list[int]) -> list[int]:
    return [round((level - FIRST_LEVEL) / LEVEL_STEP) for level in levels]


@pytest.fixture(scope="session")
def image_reference() -> Callable[[Image.Image, VisionSettings], tuple[np.ndarray, np.ndarray]]:
    """``(image, settings) -> (pixel_values, image_grid_thw)`` from transformers' PIL processor."""
    module = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    cache: dict[VisionSettings, Any] = {}

    def run(image: Image.Image, settings: VisionSettings) -> tuple[np.ndarray, np.ndarray]:
        if settings not in cache:
            cache[settings] = module.Qwen2VLImageProcessorPil(
                patch_size=settings.patch_size,
                merge_size=settings.merge_size,
                temporal_patch_size=settings.temporal_patch_size,
                image_mean=list(settings.image_mean),
                image_std=list(settings.image_std),
                size={"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
            )
        out = cache[settings](image)
        return np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])

    return run


@pytest.fixture(scope="session")
def video_reference(
    image_reference: Any,
) -> Callable[..., dict[str, Any]]:
    """The reference video path on encoded bytes (whole video, default sampling)."""
    qwen3 = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl")
    torch = pytest.importorskip("torch")
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.video_utils import VideoMetadata

    def run(data: bytes, settings: VisionSettings, fps: float | None = None) -> dict[str, Any]:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            source_fps = float(stream.average_rate or 0)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        video_proc = qwen3.Qwen3VLVideoProcessor(
            min_frames=settings.video_min_frames, max_frames=settings.video_max_frames
        )
        metadata = VideoMetadata(total_num_frames=len(frames), fps=source_fps)
        indices = video_proc.sample_frames(metadata, fps=fps or settings.video_fps).tolist()
        n = len(indices)
        factor = settings.factor
        # transformers' cap_pixels_per_frame=True rule, written out.
        per_frame = max(
            min(settings.video_max_pixels, settings.video_total_pixels // n),
            int(settings.video_min_pixels * 1.05),
        )
        height, width = frames[0].shape[:2]
        th, tw = qwen3.smart_resize(
            num_frames=n,
            height=height,
            width=width,
            temporal_factor=settings.temporal_patch_size,
            factor=factor,
            min_pixels=settings.video_min_pixels,
            max_pixels=per_frame * n,
        )
        numeric = Qwen2VLImageProcessorPil()
        prepared = []
        for i in indices:
            resized = np.asarray(Image.fromarray(frames[i]).resize((tw, th), Image.Resampling.BICUBIC))
            chw = np.ascontiguousarray(resized.transpose(2, 0, 1))
            chw = numeric.rescale(chw, settings.rescale_factor)
            prepared.append(numeric.normalize(chw, list(settings.image_mean), list(settings.image_std)))
        videos = torch.from_numpy(np.ascontiguousarray(np.stack(prepared)))[None]
        patches, grid_t, grid_h, grid_w = video_proc.patchify(
            videos,
            patch_size=settings.patch_size,
            merge_size=settings.merge_size,
            temporal_patch_size=settings.temporal_patch_size,
        )
        # A static helper in all but name: it does not use `self`.
        timestamps = Qwen3VLProcessor._calculate_timestamps(
            cast(Any, None), list(indices), source_fps, settings.temporal_patch_size
        )
        return {
            "pixel_values": patches[0].numpy(),
            "grid_thw": (grid_t, grid_h, grid_w),
            "indices": indices,
            "timestamps": timestamps,
            "source_fps": source_fps,
            "frames": len(frames),
        }

    return run


@pytest.fixture
def settings() -> VisionSettings:
    return VisionSettings()


@pytest.fixture(scope="session")
def mt() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules are not imported by name)."""
    return SimpleNamespace(
        encode_video=encode_video,
        noise_image=noise_image,
        frame_level=frame_level,
        slot_levels=slot_levels,
        levels_to_indices=levels_to_indices,
    )
