"""Media preprocessing: vlserve.media against the transformers reference, end to end from bytes.

Run from the repository root::

    python bench/preprocess.py [--quick]

Images: JPEG bytes of realistic photo sizes, ``load_image`` + ``preprocess_image``
against ``Image.open`` + ``Qwen2VLImageProcessorPil`` with the same settings.
Video: an H.264 clip generated here with PyAV (encoder defaults unless noted),
``load_video`` (in this process, ``isolated=False``: the decoding code itself; what the server's
worker process adds is measured by ``bench/isolation.py``) against the straightforward
reference: decode every frame to an
RGB array, take the sampled ones (transformers' ``sample_frames``), resize each
with Pillow bicubic, rescale/normalise as the image processor does and patchify
with the Qwen3-VL video processor's ``patchify``. Every row checks that both
outputs are bit-equal. Times are the best of several interleaved runs (the
machine may be shared), in milliseconds: wall clock, and CPU time of the
process summed over threads (a conservative measure for us: our threads add
CPU time but save wall time).

Needs the ``local`` extra (transformers, torch) for the reference.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

try:
    import vlserve  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vlserve.media import VisionSettings, load_image, load_video, preprocess_image  # noqa: E402


class Timing:
    """Best wall-clock and best CPU time (this process, all threads) over several runs, in ms."""

    def __init__(self) -> None:
        self.wall = float("inf")
        self.cpu = float("inf")

    def run(self, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        self.wall = min(self.wall, (time.perf_counter() - wall) * 1000)
        self.cpu = min(self.cpu, (time.process_time() - cpu) * 1000)
        return result


def compare(runs: int, ours: Callable[[], Any], ref: Callable[[], Any]) -> tuple[Timing, Timing, Any, Any]:
    """Interleaved runs (ours, reference, ours, ...) so load changes hit both alike."""
    mine, theirs = Timing(), Timing()
    got = expected = None
    for _ in range(runs):
        got = mine.run(ours)
        expected = theirs.run(ref)
    return mine, theirs, got, expected


def ours_image(data: bytes, settings: VisionSettings) -> Any:
    return preprocess_image(load_image(data, settings), settings)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """``(height, width, 3)`` uint8 with smooth regions, edges and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / width * 6.0) * np.cos(y / height * 4.0)
    g = 128 + 90 * np.cos((x + y) / (width + height) * 9.0)
    b = 255 * (y / height)
    img = np.stack([r, g, b], axis=-1)
    for _ in range(12):  # some hard-edged objects
        cx, cy, rad = rng.integers(0, width), rng.integers(0, height), rng.integers(height // 20, height // 5)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < rad**2
        img[mask] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(width, height)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def h264_clip(width: int, height: int, fps: int, seconds: int, gop: int | None) -> bytes:
    """A moving synthetic scene, H.264 in MP4."""
    base = photo(width + fps * seconds * 4, height, seed=1)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for i in range(fps * seconds):
            frame = np.ascontiguousarray(base[:, i * 4 : i * 4 + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


class Reference:
    """The transformers reference pipelines for one VisionSettings."""

    def __init__(self, settings: VisionSettings) -> None:
        import importlib

        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        from transformers.video_utils import VideoMetadata

        # By full module name: the package's lazy attribute would demand torchvision.
        qwen3 = importlib.import_module("transformers.models.qwen3_vl.video_processing_qwen3_vl")

        self.settings = settings
        self.image_proc = Qwen2VLImageProcessorPil(
            patch_size=settings.patch_size,
            merge_size=settings.merge_size,
            temporal_patch_size=settings.temporal_patch_size,
            image_mean=list(settings.image_mean),
            image_std=list(settings.image_std),
            size={"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
        )
        self.video_proc = qwen3.Qwen3VLVideoProcessor(
            min_frames=settings.video_min_frames, max_frames=settings.video_max_frames
        )
        self.video_smart_resize = qwen3.smart_resize
        self.metadata = VideoMetadata

    def image(self, data: bytes) -> np.ndarray:
        return np.asarray(self.image_proc(Image.open(io.BytesIO(data)))["pixel_values"])

    def video(self, data: bytes) -> np.ndarray:
        import torch

        s = self.settings
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 0)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        meta = self.metadata(total_num_frames=len(frames), fps=fps)
        indices = self.video_proc.sample_frames(meta, fps=s.video_fps)
        n = len(indices)
        per_frame = max(min(s.video_max_pixels, s.video_total_pixels // n), int(s.video_min_pixels * 1.05))
        height, width = frames[0].shape[:2]
        th, tw = self.video_smart_resize(
            num_frames=n,
            height=height,
            width=width,
            temporal_factor=s.temporal_patch_size,
            factor=s.factor,
            min_pixels=s.video_min_pixels,
            max_pixels=per_frame * n,
        )
        prepared = []
        for i in indices:
            resized = np.asarray(Image.fromarray(frames[i]).resize((tw, th), Image.Resampling.BICUBIC))
            chw = self.image_proc.rescale(resized.transpose(2, 0, 1), s.rescale_factor)
            prepared.append(self.image_proc.normalize(chw, list(s.image_mean), list(s.image_std)))
        videos = torch.from_numpy(np.ascontiguousarray(np.stack(prepared)))[None]
        patches, *_ = self.video_proc.patchify(
            videos,
            patch_size=s.patch_size,
            merge_size=s.merge_size,
            temporal_patch_size=s.temporal_patch_size,
        )
        return patches[0].numpy()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and a shorter clip")
    args = parser.parse_args()
    settings = VisionSettings()
    reference = Reference(settings)
    runs_small, runs_large = (2, 1) if args.quick else (7, 3)
    rows: list[tuple[str, Timing, Timing, bool]] = []

    for width, height in [(640, 480), (1280, 720), (1920, 1080), (4032, 3024)]:
        data = jpeg(width, height)
        mine, theirs, got, expected = compare(
            runs_small if width * height < 2_000_000 else runs_large,
            partial(ours_image, data, settings),
            partial(reference.image, data),
        )
        rows.append(
            (f"image JPEG {width}x{height}", mine, theirs, np.array_equal(got.pixel_values, expected))
        )

    clips = [
        ("1280x720 30fps 15 s h264 (x264 defaults)", 1280, 720, 30, 15, None),
        ("640x360 30fps 20 s h264 (GOP 30)", 640, 360, 30, 20, 30),
    ]
    if args.quick:
        clips = [("640x360 30fps 10 s h264 (x264 defaults)", 640, 360, 30, 10, None)]
    for label, width, height, fps, seconds, gop in clips:
        data = h264_clip(width, height, fps, seconds, gop)
        mine, theirs, got, expected = compare(
            runs_large, partial(load_video, data, settings, isolated=False), partial(reference.video, data)
        )
        rows.append((f"video {label}", mine, theirs, np.array_equal(got.pixel_values, expected)))

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"vlserve.media vs transformers reference  (CPUs: {cpus}, load avg: {os.getloadavg()[0]:.2f})")
    print("best of interleaved runs, ms; 'cpu' is process CPU time (all threads), robust to a busy machine")
    print(f"{'input':<50} {'ours':>8} {'ref':>8} {'speedup':>8} ", end="")
    print(f"{'ours cpu':>9} {'ref cpu':>8} {'cpu x':>6}  equal")
    for label, mine, theirs, equal in rows:
        print(
            f"{label:<50} {mine.wall:>8.1f} {theirs.wall:>8.1f} {theirs.wall / mine.wall:>7.1f}x "
            f"{mine.cpu:>9.1f} {theirs.cpu:>8.1f} {theirs.cpu / mine.cpu:>5.1f}x  {'yes' if equal else 'NO'}"
        )
    return 0 if all(equal for *_, equal in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
