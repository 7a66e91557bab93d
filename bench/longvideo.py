"""Long-video sampling: seeking (``vlserve.media.longvideo``) against decoding every frame.

Run from the repository root::

    python bench/longvideo.py [--minutes 60] [--videos 2:0,10:3]

A synthetic video (``vlserve.testing.videos.timeline_video``: 320x240, 25 fps, H.264 from libx264
``ultrafast``, the colour changing every second) is written to a temporary file for each
``KEYFRAME_SECONDS:BFRAMES`` in ``--videos``: by default a keyframe every 2 s without B-frames (how
streamed video is cut) and x264's defaults, a keyframe every 10 s with 3 B-frames.
The long-video planner picks the sample times of the whole video with the default
``limits.long_video_*`` (768 frames in 12 windows for an hour); then, each in its own process so
its peak memory is its own:

* **seek**: ``sample_window`` for each window, as the server's video worker runs it (here in the
  process, ``isolated=False``: the decoding code itself), seeking to the keyframe before each
  sample time and decoding forward to it;
* **decode all**: one sequential decode of every frame, taking at each sample time the same frame
  (the first whose time is at least the sample time minus half a frame), converted and resized
  to the same size.

Both start from the video's bytes in memory (as the server holds them). The table gives wall
time, frames out of the decoder and peak resident memory (VmHWM) of each process, the ratio, and
whether both got the same frames (count, and pixel-equal).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import own_peak_rss  # noqa: E402

from vlserve.config import Limits  # noqa: E402
from vlserve.media import VisionSettings  # noqa: E402
from vlserve.media.decode import VideoFile  # noqa: E402
from vlserve.media.longvideo import (  # noqa: E402
    LongVideoLimits,
    plan_sampling,
    probe_long_video,
    sample_window,
    window_settings,
)
from vlserve.media.sizing import video_target_size  # noqa: E402
from vlserve.testing.videos import timeline_video  # noqa: E402

WIDTH, HEIGHT, FPS = 320, 240, 25


def _settings() -> tuple[VisionSettings, LongVideoLimits]:
    limits = Limits(max_input_bytes=1 << 30)  # the bench's file is trusted and may be large
    return VisionSettings.from_limits(limits), LongVideoLimits.from_limits(limits)


def run_seek(path: str) -> dict[str, Any]:
    settings, limits = _settings()
    data = Path(path).read_bytes()
    started = time.perf_counter()
    probe = probe_long_video(data, settings, limits, isolated=False)
    plan = plan_sampling(probe.duration, limits)
    frames: list[np.ndarray] = []
    decoded = seeks = 0
    for window in plan.windows:
        sampled = sample_window(data, window, settings, limits, isolated=False)
        frames += sampled.frames
        decoded += sampled.decoded
        seeks += sampled.seeks
    elapsed = time.perf_counter() - started
    return _report(elapsed, frames, decoded, plan, extra={"seeks": seeks})


def run_all(path: str) -> dict[str, Any]:
    """The reference: decode every frame once, in order, and keep the planned ones."""
    settings, limits = _settings()
    data = Path(path).read_bytes()
    started = time.perf_counter()
    probe = probe_long_video(data, settings, limits, isolated=False)
    plan = plan_sampling(probe.duration, limits)
    sized = window_settings(settings, limits)
    pending = [(t, len(w.times)) for w in plan.windows for t in w.times]
    frames: list[np.ndarray] = []
    decoded = 0
    with VideoFile.open(data, settings) as video:
        half = 0.5 / float(video.stream.average_rate or FPS)
        origin = video.stream.start_time or 0
        base = video.stream.time_base
        for frame in video.container.decode(video.stream):
            decoded += 1
            at = float((frame.pts - origin) * base)
            while pending and at >= pending[0][0] - half:
                _, per_window = pending.pop(0)
                pixels = frame.to_ndarray(format="rgb24")
                target = video_target_size(per_window, pixels.shape[1], pixels.shape[0], sized)
                if (pixels.shape[1], pixels.shape[0]) != target:
                    pixels = np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BICUBIC))
                frames.append(pixels)
            if not pending:
                break
    elapsed = time.perf_counter() - started
    return _report(elapsed, frames, decoded, plan)


def _report(elapsed: float, frames: list[np.ndarray], decoded: int, plan: Any,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"seconds": elapsed, "frames": len(frames), "decoded": decoded, "peak_rss": own_peak_rss(os.getpid()),
            "windows": len(plan.windows), "fps": plan.fps,
            "hashes": [hashlib.blake2b(f.tobytes(), digest_size=8).hexdigest() for f in frames], **(extra or {})}


def _child(method: str, path: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", method, path], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the synthetic video")
    parser.add_argument("--videos", default="2:0,10:3", help="KEYFRAME_SECONDS:BFRAMES of each video to try")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path = args.child
        print(json.dumps(run_seek(path) if method == "seek" else run_all(path)))
        return
    seconds = args.minutes * 60
    print(f"Long-video sampling: a {args.minutes:g}-minute synthetic video, {WIDTH}x{HEIGHT} at {FPS} fps "
          f"({round(seconds * FPS):,} frames), H.264 (libx264 ultrafast); default limits.long_video_*")
    print(f"{'keyframes':>14} | {'method':<22} | {'time':>8} | {'decoded':>9} | {'peak RSS':>9} | frames")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.videos.split(","):
            gop, bframes = float(spec.split(":")[0]), int(spec.split(":")[1]) if ":" in spec else 0
            path = str(Path(tmp) / f"long_{gop:g}_{bframes}.mp4")
            started = time.perf_counter()
            timeline_video(seconds, fps=FPS, width=WIDTH, height=HEIGHT, gop=round(gop * FPS), barcode=False,
                           bframes=bframes, path=path)
            label = f"every {gop:g} s" + (f", {bframes}B" if bframes else "")
            made = time.perf_counter() - started
            seek, every = _child("seek", path), _child("all", path)
            for name, row in (("seek (media/longvideo)", seek), ("decode every frame", every)):
                print(f"{label:>14} | {name:<22} | {row['seconds']:7.2f}s | "
                      f"{row['decoded']:9,} | {row['peak_rss'] / 2**20:6.0f} MiB | {row['frames']}")
            same = seek["frames"] == every["frames"] and seek["hashes"] == every["hashes"]
            print(f"{'':>14} | ratio: seek {every['seconds'] / seek['seconds']:.2f}x faster, decodes "
                  f"{seek['decoded'] / every['decoded']:.2f}x the frames ({seek['seeks']} seeks), peak RSS "
                  f"{seek['peak_rss'] / every['peak_rss']:.2f}x; equal frames: {'yes' if same else 'NO'} "
                  f"({seek['frames']} in {seek['windows']} windows at {seek['fps']:.3f} fps; file "
                  f"{Path(path).stat().st_size / 2**20:.1f} MiB, generated in {made:.0f} s)")


if __name__ == "__main__":
    main()
