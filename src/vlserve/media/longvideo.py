"""Long videos (minutes to hours): probe, plan samples across the whole duration, decode by seeking.

``video_qa`` decodes one clip of at most ``limits.max_video_seconds`` (30 s) at ``video_fps``;
this module serves the long-video tasks (``video_summary``, ``video_search``), which look at a
whole video of up to ``limits.long_video_max_seconds`` (2 h) in *windows*, one model call each.

Plan (:func:`plan_sampling`, pure arithmetic):

* the analysed range is ``[start, end)`` (default: the whole video); longer than
  ``long_video_max_seconds`` is refused with 1002;
* adaptive rate: ``fps = min(long_video_fps, long_video_max_frames / length)``, so a 60 s clip is
  sampled at 2 fps and a 2 h film at about one frame every 9 s, never more than
  ``long_video_max_frames`` frames in all;
* ``W = max(ceil(length / long_video_window_seconds), ceil(frames / long_video_window_frames))``
  windows of equal length, in order, back to back, covering the range exactly; each gets the
  same even number of frames (at least 4, Qwen3-VL's fewest), at the centres of equal slices of
  the window, so the samples are evenly spread over the whole range;
* each window's frames are resized so the window costs at most ``long_video_window_tokens`` visual
  tokens (``video_total_pixels = tokens * factor**2 * temporal_patch_size`` in ``sizing``'s rules).

Decoding (:func:`sample_window`): for each sample time the container is *seeked* to the keyframe
at or before it (``container.seek(..., backward=True)``) and decoded forward to the first frame
whose time is at least ``t - half a frame`` (the frame nearest ``t`` for a constant rate). When
the next sample is closer than the distance between keyframes seen so far, decoding simply goes
on instead (a seek would land on the same keyframe and decode the same frames again), so the
cost is at most about one GOP per sample and never much more than decoding the whole file.
Each frame is turned upright, resized (Pillow bicubic, as ``video``) and kept as small uint8;
the full-size frame is dropped at once, so memory depends on the window's frame budget, not on
the video's length.

Isolation: as ``video``: the bytes pass ``check_signature`` (size, container whitelist) before a
worker sees them, FFmpeg opens them in memory through ``decode.open_container`` (explicit
demuxer, no nested protocols), and probing and each window's decode run in a worker of
``vlserve.isolation.video_pool`` under its wall-clock, CPU and memory limits (1003 beyond).

Timestamps are seconds since the video's first frame, as in ``video``; a window's
:class:`VideoFeatures` carries the *absolute* times, so the prompt shows Qwen3-VL's own
``<t seconds>`` markers (the mean time of each temporal pair, as transformers' processor) at
their place in the whole video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from vlserve.config import Limits
from vlserve.errors import VideoError, VideoTooLongError
from vlserve.isolation import IsolationError, WorkerPool, video_pool
from vlserve.media.decode import VideoFile, check_signature, read_video_bytes
from vlserve.media.patches import new_patch_buffer, write_frame
from vlserve.media.settings import VisionSettings
from vlserve.media.sizing import video_target_size
from vlserve.media.video import TOO_COMPLEX, VideoFeatures, _av_frames, _declared_fps, decode_errors

__all__ = [
    "LongVideoLimits",
    "LongVideoProbe",
    "SampledWindow",
    "SamplingPlan",
    "SeekingSampler",
    "Window",
    "plan_sampling",
    "probe_long_video",
    "probe_long_video_async",
    "sample_window",
    "sample_window_async",
    "window_features",
    "window_settings",
]

MIN_WINDOW_FRAMES = 4  # Qwen3-VL's fewest frames per video (HF min_frames)
_DEFAULT_FPS = 25.0  # frame rate assumed when a stream declares none (only for "nearest frame")


@dataclass(frozen=True)
class LongVideoLimits:
    """The ``limits.long_video_*`` settings (see ``config.Limits`` for each one's meaning)."""

    max_seconds: float = 7200.0
    fps: float = 2.0
    max_frames: int = 768
    window_seconds: float = 300.0
    window_frames: int = 64
    window_tokens: int = 4096

    @classmethod
    def from_limits(cls, limits: Limits) -> LongVideoLimits:
        return cls(
            max_seconds=limits.long_video_max_seconds,
            fps=limits.long_video_fps,
            max_frames=limits.long_video_max_frames,
            window_seconds=limits.long_video_window_seconds,
            window_frames=limits.long_video_window_frames,
            window_tokens=limits.long_video_window_tokens,
        )

    def at_most(self, fps: float | None) -> LongVideoLimits:
        """These limits with a caller's sampling rate (``options.fps``) as the ceiling, never above ours."""
        return self if fps is None else replace(self, fps=min(self.fps, float(fps)))


@dataclass(frozen=True)
class LongVideoProbe:
    """A video's stream facts: ``duration`` in seconds (from the header, else found by demuxing)."""

    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    duration: float


@dataclass(frozen=True)
class Window:
    """One model call's stretch ``[start, end)`` of the video and its sample ``times`` (seconds)."""

    index: int
    start: float
    end: float
    times: tuple[float, ...]


@dataclass(frozen=True)
class SamplingPlan:
    """Where frames are taken: ``windows`` in order, back to back, from ``start`` to ``end``."""

    start: float
    end: float
    fps: float  # frames per second actually sampled (adaptive)
    windows: tuple[Window, ...]

    @property
    def frames(self) -> int:
        return sum(len(w.times) for w in self.windows)

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass
class SampledWindow:
    """The frames decoded for one window.

    ``frames[i]`` is ``(H, W, 3)`` uint8, already resized to the window's size; ``times[i]`` is
    its frame's time (seconds since the first frame), ascending. ``missing`` counts sample times
    for which no frame exists (past the real end of a stream whose header said it was longer).
    ``decoded`` and ``seeks`` say what the decode cost (frames out of the decoder, seeks done).
    """

    window: Window
    times: list[float]
    frames: list[np.ndarray]
    fps: float | None = None  # the stream's declared frame rate
    missing: int = 0
    decoded: int = 0
    seeks: int = 0


# -- planning -----------------------------------------------------------------------------------
def plan_sampling(
    duration: float, limits: LongVideoLimits, *, start: float | None = None, end: float | None = None
) -> SamplingPlan:
    """The windows and sample times for ``[start, end)`` of a video of ``duration`` seconds.

    Raises VideoError for an empty range and VideoTooLongError (1002) for one longer than
    ``limits.max_seconds``.
    """
    if not (duration > 0 and math.isfinite(duration)):
        raise VideoError("The video has no duration (no frames, or a broken header).")
    lo = 0.0 if start is None else float(start)
    hi = duration if end is None else min(float(end), duration)
    if not (0 <= lo < hi):
        raise VideoError(f"No frames between {lo:g} s and {hi:g} s; the video is {duration:.1f} s long.")
    length = hi - lo
    if length > limits.max_seconds:
        raise VideoTooLongError(
            f"The video is {length:.1f} s long; this task analyses at most {limits.max_seconds:g} s. "
            f"Trim it, or send start/end to select a part of at most {limits.max_seconds:g} s.",
            limit_seconds=limits.max_seconds,
        )
    wanted = max(MIN_WINDOW_FRAMES, math.floor(length * min(limits.fps, limits.max_frames / length)))
    count = max(math.ceil(length / limits.window_seconds), math.ceil(wanted / limits.window_frames), 1)
    per_window = max(MIN_WINDOW_FRAMES, min(limits.window_frames, wanted // count) // 2 * 2)
    windows = []
    for k in range(count):
        w_start = lo + length * k / count
        w_end = hi if k == count - 1 else lo + length * (k + 1) / count
        step = (w_end - w_start) / per_window
        times = tuple(w_start + (j + 0.5) * step for j in range(per_window))
        windows.append(Window(k, w_start, w_end, times))
    return SamplingPlan(lo, hi, per_window * count / length, tuple(windows))


def window_settings(settings: VisionSettings, limits: LongVideoLimits) -> VisionSettings:
    """``settings`` with the video pixel budget of one window (``limits.window_tokens`` tokens)."""
    total = limits.window_tokens * settings.factor * settings.factor * settings.temporal_patch_size
    return replace(settings, video_total_pixels=total)


# -- probing --------------------------------------------------------------------------------------
def probe_long_video(
    source: bytes | str | os.PathLike[str], settings: VisionSettings, limits: LongVideoLimits, *,
    isolated: bool = True, pool: WorkerPool | None = None,
) -> LongVideoProbe:
    """The stream facts of an encoded video (checked like ``load_video``; opened in a worker)."""
    data = read_video_bytes(source, settings)
    check_signature(data, settings)  # refused files never reach a worker, let alone FFmpeg
    if not isolated:
        return _probe(data, settings, limits)
    try:
        return (pool or video_pool()).run(_probe, data, settings, limits)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


async def probe_long_video_async(
    data: bytes, settings: VisionSettings, limits: LongVideoLimits, *, pool: WorkerPool | None = None
) -> LongVideoProbe:
    """:func:`probe_long_video` awaited on the video pool."""
    data = read_video_bytes(data, settings)
    check_signature(data, settings)
    try:
        return await (pool or video_pool()).arun(_probe, data, settings, limits)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


def _probe(data: bytes, settings: VisionSettings, limits: LongVideoLimits) -> LongVideoProbe:
    with decode_errors(), VideoFile.open(data, settings) as video:
        stream = video.stream
        duration = video.metadata_duration()
        if duration is None or not math.isfinite(duration) or duration <= 0:
            duration = _demuxed_duration(video, limits)
        return LongVideoProbe(
            container=check_signature(data, settings),
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=_declared_fps(stream),
            duration=duration,
        )


def _demuxed_duration(video: VideoFile, limits: LongVideoLimits) -> float:
    """Seconds from the first to past the last packet, by demuxing only (no header said it);
    stops, as too long, once packets pass ``limits.max_seconds``."""
    stream = video.stream
    base = stream.time_base or Fraction(1, 90000)
    first: int | None = None
    last: int | None = None
    for packet in video.container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        first = packet.pts if first is None else min(first, packet.pts)
        last = packet.pts if last is None else max(last, packet.pts)
        if float((last - first) * base) > limits.max_seconds + 1:
            raise VideoTooLongError(
                f"The video is longer than {limits.max_seconds:g} s, the most this task analyses. "
                f"Trim it, or send start/end to select a part of at most {limits.max_seconds:g} s.",
                limit_seconds=limits.max_seconds,
            )
    if first is None or last is None:
        raise VideoError("The video has no frames.")
    fps = _declared_fps(stream) or _DEFAULT_FPS
    return float((last - first) * base) + 1 / fps


# -- sampling -------------------------------------------------------------------------------------
def sample_window(
    source: bytes | str | os.PathLike[str], window: Window, settings: VisionSettings, limits: LongVideoLimits,
    *, isolated: bool = True, pool: WorkerPool | None = None,
) -> SampledWindow:
    """Decode ``window``'s frames by seeking, resized to the window's token budget."""
    data = read_video_bytes(source, settings)
    check_signature(data, settings)
    if not isolated:
        return _sample(data, window, settings, limits)
    try:
        return (pool or video_pool()).run(_sample, data, window, settings, limits)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


async def sample_window_async(
    data: bytes, window: Window, settings: VisionSettings, limits: LongVideoLimits, *,
    pool: WorkerPool | None = None,
) -> SampledWindow:
    """:func:`sample_window` awaited on the video pool (cancelling it stops the worker)."""
    data = read_video_bytes(data, settings)
    check_signature(data, settings)
    try:
        return await (pool or video_pool()).arun(_sample, data, window, settings, limits)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


def _sample(data: bytes, window: Window, settings: VisionSettings, limits: LongVideoLimits) -> SampledWindow:
    """The whole decode of one window (runs in the worker): every failure as a coded error."""
    sized = window_settings(settings, limits)
    times: list[float] = []
    frames: list[np.ndarray] = []
    target: tuple[int, int] | None = None
    with decode_errors(), VideoFile.open(data, settings) as video:
        sampler = SeekingSampler(video)
        found = sampler.frames_at(window.times)
        for decoded in _av_frames((i, frame) for i, (_, frame) in enumerate(found)):
            if target is None:
                target = video_target_size(len(window.times), decoded.width, decoded.height, sized)
            pixels = decoded.rgb()
            if (pixels.shape[1], pixels.shape[0]) != target:
                pixels = np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BICUBIC))
            frames.append(pixels)
            times.append(sampler.last_time)
        return SampledWindow(window, times, frames, fps=_declared_fps(video.stream),
                             missing=len(window.times) - len(frames), decoded=sampler.decoded, seeks=sampler.seeks)


class SeekingSampler:
    """Frames of an opened video nearest given times, found by seeking to keyframes.

    ``decoded`` counts frames out of the decoder, ``seeks`` the seeks done; ``last_time`` is the
    time of the frame :meth:`frames_at` yielded last.
    """

    def __init__(self, video: VideoFile) -> None:
        self.video = video
        self.stream = video.stream
        self.base = self.stream.time_base or Fraction(1, 90000)
        start = self.stream.start_time  # pts of the first frame (the timeline's 0 s)
        self.origin: int = 0 if start is None else int(start)
        self.half_frame = 0.5 / (_declared_fps(self.stream) or _DEFAULT_FPS)
        self.decoded = 0
        self.seeks = 0
        self.last_time = 0.0
        self._gop = 0.0  # widest distance between keyframes (or from a keyframe to a target) seen
        self._frames: Iterator[Any] | None = None
        self._held: Any = None  # the frame yielded last (it may be the nearest to the next time too)
        self._position: float | None = None  # time of the last frame decoded
        self._earliest = 0  # pts below which no frame can be the one sought

    def time_of(self, frame: Any) -> float:
        return float((frame.pts - self.origin) * self.base)

    def frames_at(self, times: Sequence[float]) -> Iterator[tuple[float, Any]]:
        """``(requested time, av.VideoFrame)`` for each of the ascending ``times`` that has a frame."""
        for wanted in times:
            if self._held is not None and self.last_time >= wanted - self.half_frame:
                yield wanted, self._held  # two sample times closer than a frame: the same frame
                continue
            ahead = None if self._position is None else wanted - self._position
            if self._frames is None or ahead is None or ahead < 0 or ahead > self._gop:
                self._seek(wanted)
            frame = self._held = self._forward_to(wanted)
            if frame is not None:
                yield wanted, frame

    def _seek(self, wanted: float) -> None:
        # To the keyframe at or before the earliest acceptable frame (half a frame before ``wanted``).
        ticks = max(0, math.floor((wanted - self.half_frame) / self.base))
        self.video.container.seek(self.origin + ticks, stream=self.stream, backward=True, any_frame=False)
        # (PyAV flushes the decoder on seek: no frame from before the seek comes out after it.)
        self.seeks += 1
        self._frames = self._decode()
        self._position = None

    def _decode(self) -> Iterator[Any]:
        codec = self.stream.codec_context
        try:
            for packet in self.video.container.demux(self.stream):
                # A frame shown before the earliest acceptable time is never taken; if no other frame
                # refers to it either (a B-frame, typically), the decoder may skip it altogether.
                early = packet.pts is not None and packet.pts < self._earliest
                codec.skip_frame = "NONREF" if early else "DEFAULT"
                for frame in packet.decode():
                    if frame.pts is not None:
                        yield frame
        finally:
            codec.skip_frame = "DEFAULT"

    def _forward_to(self, wanted: float) -> Any:
        assert self._frames is not None
        self._earliest = self.origin + math.floor((wanted - self.half_frame) / self.base)
        last_key: float | None = None
        for frame in self._frames:
            self.decoded += 1
            at = self.time_of(frame)
            self._position = at
            if frame.key_frame:
                if last_key is not None:
                    self._gop = max(self._gop, at - last_key)
                last_key = at
            if at >= wanted - self.half_frame:
                if last_key is not None:
                    self._gop = max(self._gop, wanted - last_key)
                self.last_time = at
                return frame
        self._frames = None  # the stream ended before this time: it has no frame
        return None


def window_features(sampled: SampledWindow, settings: VisionSettings) -> VideoFeatures:
    """The window's frames as encoder input, timestamped at their absolute times in the video.

    ``pixel_values`` and ``grid_thw`` as ``load_video``'s; an odd frame count is padded by
    repeating the last frame (the processor's rule), and each ``<t seconds>`` marker is the mean
    time of its temporal pair.
    """
    if not sampled.frames:
        raise VideoError("No frames could be decoded in this part of the video.")
    n, tps, p, m = len(sampled.frames), settings.temporal_patch_size, settings.patch_size, settings.merge_size
    height, width = sampled.frames[0].shape[:2]
    grid_t = -(-n // tps)
    out = new_patch_buffer(grid_t, height // p, width // p, settings)
    for k, pixels in enumerate(sampled.frames):
        slots = slice(k % tps, tps if k == n - 1 else k % tps + 1)  # the last frame fills its group
        write_frame(out[k // tps], pixels, slots, settings)
    bands, cols = out.shape[1], out.shape[2]
    times = list(sampled.times)
    times += [times[-1]] * (grid_t * tps - n)  # padding repeats the last frame, and its time
    fps = sampled.fps or _DEFAULT_FPS
    return VideoFeatures(
        pixel_values=out.reshape(grid_t * bands * m * cols * m, -1),
        grid_thw=(grid_t, bands * m, cols * m),
        frame_indices=[round(t * fps) for t in times],
        timestamps=[(times[i] + times[i + tps - 1]) / 2 for i in range(0, len(times), tps)],
        source_fps=sampled.fps,
        duration=sampled.window.end - sampled.window.start,
        truncated=False,
        merge_size=settings.merge_size,
    )
