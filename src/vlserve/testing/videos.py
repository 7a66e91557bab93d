"""Synthetic videos with known content at known times, for the long-video tests and ``bench/longvideo.py``.

Frame ``i`` of :func:`timeline_video` shows, from top to bottom:

* a barcode of ``i`` (``BITS`` blocks, white for 1, black for 0, most significant first) in the
  top quarter, so a sampled frame's number can be read back after encoding and resizing;
* the colour of second ``i // fps // change_every`` (see :func:`segment_colour`) in the lower
  half, so a frame's time can be checked from one pixel: the "events" are the colour changes.

Encoded with PyAV (libx264 ``ultrafast`` by default, or mpeg4), keyframes every ``gop`` frames.
"""

from __future__ import annotations

import io
import os
from typing import Any

import av
import numpy as np

__all__ = ["BITS", "PALETTE", "read_frame_number", "segment_colour", "timeline_frame", "timeline_video"]

BITS = 18  # frame numbers up to 262143: 2.9 h at 25 fps
PALETTE = np.array(
    [(220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 220, 40), (200, 40, 210), (40, 210, 220), (240, 240, 240),
     (120, 60, 20)], dtype=np.uint8)


def segment_colour(segment: int) -> tuple[int, int, int]:
    """The colour of segment ``segment`` (neighbours always differ)."""
    r, g, b = PALETTE[segment % len(PALETTE)]
    return int(r), int(g), int(b)


def timeline_frame(number: int, segment: int, width: int, height: int, *, barcode: bool = True) -> np.ndarray:
    """Frame ``number`` of segment ``segment`` as ``(height, width, 3)`` uint8."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[height // 2 :] = segment_colour(segment)
    if barcode:
        for bit in range(BITS):
            if number >> (BITS - 1 - bit) & 1:
                frame[: height // 4, bit * width // BITS : (bit + 1) * width // BITS] = 255
    return frame


def read_frame_number(frame: np.ndarray) -> int:
    """The barcode of a (possibly resized, lossy) :func:`timeline_frame`."""
    height, width = frame.shape[:2]
    band = frame[: max(1, height // 4)].astype(np.float32).mean(axis=(0, 2))  # brightness per column
    block = width / BITS
    number = 0
    for bit in range(BITS):  # the middle half of each block: its edges blur when resized
        lo = int((bit + 0.25) * block)
        hi = max(lo + 1, int((bit + 0.75) * block))
        number = number << 1 | int(band[lo:hi].mean() > 128)
    return number


def timeline_video(
    seconds: float,
    *,
    fps: int = 10,
    width: int = 160,
    height: int = 120,
    gop: int | None = None,
    change_every: float = 1.0,
    codec: str = "libx264",
    fmt: str = "mp4",
    barcode: bool = True,
    bframes: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Encode ``seconds`` of timeline video; returns the bytes (also written to ``path`` if given).

    ``bframes`` (libx264): B-frames between reference frames, as most encoders make by default
    (0: none, the fastest to encode).
    """
    frames = round(seconds * fps)
    buf: Any = io.BytesIO() if path is None else os.fspath(path)
    with av.open(buf, "w", format=fmt) as container:
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop or fps * 2
        if codec == "libx264":
            # One keyframe every gop frames exactly (no scene-cut keyframes), no B-frames: fast.
            options = {"preset": "ultrafast", "sc_threshold": "0", "keyint_min": str(gop or fps * 2)}
            stream.options = {**options, "bf": str(bframes)} if bframes else {**options, "tune": "zerolatency"}
        cached: dict[int, av.VideoFrame] = {}
        for number in range(frames):
            segment = int(number / fps / change_every)
            if barcode:
                frame = av.VideoFrame.from_ndarray(timeline_frame(number, segment, width, height), format="rgb24")
            else:  # one picture per segment, reused: a cheap, long video
                if segment not in cached:
                    cached = {segment: av.VideoFrame.from_ndarray(
                        timeline_frame(0, segment, width, height, barcode=False), format="rgb24")}
                frame = cached[segment]
            frame.pts = number
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if path is None:
        return bytes(buf.getvalue())
    with open(path, "rb") as fh:
        return fh.read()
