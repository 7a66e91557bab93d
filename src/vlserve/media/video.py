"""Video preprocessing for the Qwen3-VL vision encoder.

``load_video`` turns encoded video (MP4, MOV, AVI, WEBM, MKV; recognised from
the content) or a list of already sampled frames into encoder input.

Rules (transformers' Qwen3-VL processor, see ``sampling`` and ``sizing``):

* frame numbers count frames in presentation order from the start of the
  file; the clip is the frames with ``start <= time < end`` (seconds since the
  first frame; both optional);
* the clip's duration is ``last time - first time + 1 / source_fps``; if it
  exceeds ``max_video_seconds`` by more than half a frame, policy ``"reject"``
  raises VideoTooLongError and ``"truncate"`` keeps the frames before
  ``start + max_video_seconds``;
* ``n = int(clip_frames / source_fps * fps)`` clamped to
  ``[min_frames, max_frames]`` and to the clip's frame count, at indices
  ``round(linspace(0, clip_frames - 1, n))``; an odd ``n`` is made even by
  repeating the last sampled frame (the processor's padding), which shows in
  ``frame_indices``;
* every frame is resized (Pillow bicubic on uint8, as the reference path) to
  ``sizing.video_target_size(n, width, height)``: per-frame budget
  ``max(min(video_max_pixels, video_total_pixels // n), int(1.05 * video_min_pixels))``;
* timestamps are ``frame_number / source_fps`` averaged over each temporal
  group, in the source's timeline (a clip that starts at 12 s shows 12 s).

Frames carrying a display rotation (phones) are turned upright first.
A list of frames is taken as already sampled at ``fps`` frames per second (default
``video_fps``): all frames are used (uniformly thinned to ``max_frames`` if
longer), ``start``/``end`` and the duration policy apply to their times.

Isolation: encoded video (bytes or a path, read into memory) is checked here
(size, container signature against ``video_containers``: see ``decode``), then
demuxed, decoded, resized and patched in a worker process of
``vlserve.isolation.video_pool`` under hard wall-clock, CPU and memory limits;
only the finished ``VideoFeatures`` come back. A file that would decode for
minutes or allocate gigabytes fails its own request with 1003 and nothing else.
The worker runs exactly this module's code, so results are bit for bit the
in-process ones (``isolated=False``, for trusted callers and benchmarks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image

from vlserve.errors import PayloadTooLargeError, VideoError, VideoTooLongError
from vlserve.isolation import IsolationError, WorkerPool, video_pool
from vlserve.media.decode import FrameIndex, MissingFramesError, VideoFile, check_signature, read_video_bytes
from vlserve.media.image import to_rgb
from vlserve.media.patches import new_patch_buffer, write_frame
from vlserve.media.sampling import group_timestamps, pad_to_multiple, sample_indices
from vlserve.media.settings import VisionSettings
from vlserve.media.sizing import video_target_size
from vlserve.media.threads import media_pool, pool_size

__all__ = ["VideoFeatures", "VideoProbe", "load_video", "probe_video", "probe_video_async"]

TOO_COMPLEX = (
    "The video is too large or too complex to decode within this server's limits (time or memory); "
    "send a shorter or smaller clip."
)

FrameInput = Image.Image | np.ndarray
VideoSource = bytes | str | os.PathLike[str] | Sequence[FrameInput]


@dataclass
class VideoFeatures:
    """One video, ready for the vision encoder.

    ``pixel_values`` is ``(grid_t*grid_h*grid_w, 3*temporal_patch*patch*patch)``
    float32, rows in the encoder's order (temporal group, then merge order).
    """

    pixel_values: np.ndarray
    grid_thw: tuple[int, int, int]
    frame_indices: list[int]  # source frame numbers of the sampled frames, padded
    timestamps: list[float]  # seconds, one per temporal group (grid_t entries)
    source_fps: float | None
    duration: float | None  # seconds of source video after start/end clipping
    truncated: bool  # True when policy "truncate" cut the clip to max_video_seconds
    merge_size: int

    @property
    def num_tokens(self) -> int:
        """Number of ``<|video_pad|>`` tokens for the whole video."""
        t, h, w = self.grid_thw
        return t * h * w // (self.merge_size * self.merge_size)

    @property
    def tokens_per_frame_group(self) -> int:
        """Tokens after each ``<t seconds>`` marker: ``grid_h*grid_w // merge**2``."""
        _, h, w = self.grid_thw
        return h * w // (self.merge_size * self.merge_size)


@dataclass(frozen=True)
class _Clip:
    """The part of the video that is used and the frames sampled from it."""

    first: int  # frame number of the clip's first frame
    count: int  # frames in the clip
    duration: Fraction
    truncated: bool
    sampled: list[int]  # frame numbers, ascending, before padding


def load_video(
    source: VideoSource,
    settings: VisionSettings,
    *,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
    isolated: bool = True,
    pool: WorkerPool | None = None,
) -> VideoFeatures:
    """Decode, sample, resize, normalise and patch a video.

    ``source`` is encoded bytes, a path, or a sequence of frames (Pillow images or
    ``(H, W, 3)`` uint8 arrays). ``fps`` is the sampling rate for encoded video
    and the frame rate of a frame sequence (default ``settings.video_fps``).
    ``start``/``end`` select a clip in seconds. ``min_frames``/``max_frames``
    override the settings. Encoded video is decoded in a worker process of
    ``pool`` (default: the server's ``video_pool``) unless ``isolated=False``.
    Raises VideoError (corrupt, unsupported, no video stream, bad arguments, or
    over the worker's time/memory limits), VideoTooLongError (policy "reject")
    and PayloadTooLargeError (more than ``max_video_bytes``).
    """
    sample_fps = settings.video_fps if fps is None else float(fps)
    lo = settings.video_min_frames if min_frames is None else int(min_frames)
    hi = settings.video_max_frames if max_frames is None else int(max_frames)
    if not (sample_fps > 0 and np.isfinite(sample_fps)):
        raise VideoError(f"fps must be a positive number, got {fps!r}.")
    if lo < 1 or hi < lo:
        raise VideoError(f"Need 1 <= min_frames <= max_frames, got {lo} and {hi}.")
    clip_start = _seconds("start", start) or Fraction(0)
    clip_end = _seconds("end", end)
    if clip_end is not None and clip_end <= clip_start:
        raise VideoError(f"end ({end}) must be after start ({start or 0}).")
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if not isinstance(source, (bytes, str, os.PathLike)):
        return _from_frames(list(source), settings, Fraction(repr(sample_fps)), clip_start, clip_end, hi)
    data = read_video_bytes(source, settings)
    check_signature(data, settings)  # refused files never reach a worker, let alone FFmpeg
    if not isolated:
        return _decode_encoded(data, settings, sample_fps, clip_start, clip_end, lo, hi)
    try:
        return (pool or video_pool()).run(
            _decode_encoded, data, settings, sample_fps, clip_start, clip_end, lo, hi
        )
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


def _decode_encoded(
    data: bytes,
    settings: VisionSettings,
    sample_fps: float,
    clip_start: Fraction,
    clip_end: Fraction | None,
    lo: int,
    hi: int,
) -> VideoFeatures:
    """The whole decode of checked bytes, every failure as a coded error (runs in the worker)."""
    with decode_errors():
        return _from_file(data, settings, sample_fps, clip_start, clip_end, lo, hi)


@contextmanager
def decode_errors() -> Iterator[None]:
    """FFmpeg's and Python's failures while reading untrusted video bytes, as coded errors (1003)."""
    try:
        yield
    except (VideoError, VideoTooLongError, PayloadTooLargeError):
        raise
    except av.FFmpegError as err:
        raise VideoError(
            "The video could not be decoded; it may be corrupt, truncated or in an unsupported format "
            "(supported: MP4, MOV, AVI, WEBM, MKV)."
        ) from err
    except MemoryError as err:
        raise VideoError(TOO_COMPLEX) from err
    except (OSError, ValueError, EOFError, RuntimeError) as err:
        raise VideoError("The video could not be read; it may be corrupt or truncated.") from err


@dataclass(frozen=True)
class VideoProbe:
    """What a video's container header declares (read in a worker; no frame is decoded).

    ``duration`` (seconds), ``fps`` and ``frames`` come from the header and may
    be absent (None) or rough; ``frames`` is the stream's declared frame count.
    """

    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    frames: int | None


def probe_video(
    source: bytes | str | os.PathLike[str],
    settings: VisionSettings,
    *,
    isolated: bool = True,
    pool: WorkerPool | None = None,
) -> VideoProbe:
    """The header facts of an encoded video, for cost estimates before decoding.

    The same checks as ``load_video`` (bytes limit, container signature and
    whitelist, a video stream, frame size within ``max_image_pixels``), with the
    container opened in a worker process unless ``isolated=False``. Raises
    VideoError and PayloadTooLargeError.
    """
    data = read_video_bytes(source, settings)
    check_signature(data, settings)
    if not isolated:
        return _probe_encoded(data, settings)
    try:
        return (pool or video_pool()).run(_probe_encoded, data, settings)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


async def probe_video_async(
    source: bytes | str | os.PathLike[str], settings: VisionSettings, *, pool: WorkerPool | None = None
) -> VideoProbe:
    """``probe_video`` awaited on the video pool: no thread of the event loop's executor waits for it."""
    data = read_video_bytes(source, settings)
    check_signature(data, settings)
    try:
        return await (pool or video_pool()).arun(_probe_encoded, data, settings)
    except IsolationError as err:
        raise VideoError(TOO_COMPLEX, reason=err.reason) from err


def _probe_encoded(data: bytes, settings: VisionSettings) -> VideoProbe:
    try:
        with VideoFile.open(data, settings) as video:
            stream = video.stream
            fps = _declared_fps(stream)
            return VideoProbe(
                container=check_signature(data, settings),
                codec=stream.codec_context.name,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=fps,
                duration=video.metadata_duration(),
                frames=int(stream.frames) or None,
            )
    except (VideoError, PayloadTooLargeError):
        raise
    except av.FFmpegError as err:
        raise VideoError(
            "The video could not be decoded; it may be corrupt, truncated or in an unsupported format "
            "(supported: MP4, MOV, AVI, WEBM, MKV)."
        ) from err
    except MemoryError as err:
        raise VideoError(TOO_COMPLEX) from err
    except (OSError, ValueError, EOFError, RuntimeError) as err:
        raise VideoError("The video could not be read; it may be corrupt or truncated.") from err


def _declared_fps(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def _from_file(
    source: bytes | str | os.PathLike[str],
    settings: VisionSettings,
    sample_fps: float,
    clip_start: Fraction,
    clip_end: Fraction | None,
    lo: int,
    hi: int,
) -> VideoFeatures:
    limit = Fraction(repr(settings.max_video_seconds))
    stop = clip_start + limit if clip_end is None else min(clip_end, clip_start + limit)
    with VideoFile.open(source, settings) as video:
        index = video.index(stop)
        clip = _plan_clip(
            index, clip_start, clip_end, settings, sample_fps, lo, hi, video.metadata_duration()
        )
        try:
            pixels, grid = _process(_av_frames(video.decode(index, clip.sampled)), clip.sampled, settings)
        except MissingFramesError:
            # Timestamps misled us: number frames by decoding, as the reference does.
            index = video.index_by_decoding(stop, fps=index.fps)
            clip = _plan_clip(
                index, clip_start, clip_end, settings, sample_fps, lo, hi, video.metadata_duration()
            )
            pixels, grid = _process(_av_frames(video.decode_sequential(clip.sampled)), clip.sampled, settings)
    source_fps = float(index.fps)
    padded = pad_to_multiple(clip.sampled, settings.temporal_patch_size)
    return VideoFeatures(
        pixel_values=pixels,
        grid_thw=grid,
        frame_indices=padded,
        timestamps=group_timestamps(padded, source_fps, settings.temporal_patch_size),
        source_fps=source_fps,
        duration=float(clip.duration),
        truncated=clip.truncated,
        merge_size=settings.merge_size,
    )


def _plan_clip(
    index: FrameIndex,
    clip_start: Fraction,
    clip_end: Fraction | None,
    settings: VisionSettings,
    sample_fps: float,
    lo: int,
    hi: int,
    metadata_duration: float | None,
) -> _Clip:
    times = index.times
    inside = [i for i, t in enumerate(times) if t >= clip_start and (clip_end is None or t < clip_end)]
    if not inside:
        length = float(times[-1] + 1 / index.fps)
        raise VideoError(
            f"No frames between {float(clip_start):g} s and "
            f"{'the end' if clip_end is None else f'{float(clip_end):g} s'}; "
            f"the video is {length:.1f} s long."
        )
    period = 1 / index.fps
    duration = times[inside[-1]] - times[inside[0]] + period
    limit = Fraction(repr(settings.max_video_seconds))
    # Demuxing stopped early only if frames exist beyond the stop time, so the clip is too long.
    # Half a frame of slack: containers with coarse time bases (MKV: 1 ms) round frame times.
    too_long = duration > limit + period / 2 or (
        not index.complete and (clip_end is None or clip_end > clip_start + limit)
    )
    truncated = False
    if too_long:
        if settings.video_policy == "reject":
            raise _too_long(duration if index.complete else None, metadata_duration, clip_start, settings)
        inside = [i for i in inside if times[i] < clip_start + limit]
        duration = times[inside[-1]] - times[inside[0]] + period
        truncated = True
    first, count = inside[0], len(inside)
    picks = sample_indices(count, float(index.fps), sample_fps, min_frames=lo, max_frames=hi)
    return _Clip(
        first=first, count=count, duration=duration, truncated=truncated, sampled=[first + i for i in picks]
    )


def _too_long(
    duration: Fraction | None, metadata_duration: float | None, clip_start: Fraction, settings: VisionSettings
) -> VideoTooLongError:
    if duration is not None:
        length = f"{float(duration):.1f} s"
    elif metadata_duration is not None and metadata_duration - float(clip_start) > settings.max_video_seconds:
        length = f"{metadata_duration - float(clip_start):.1f} s"
    else:
        length = f"longer than {settings.max_video_seconds:g} s"
    return VideoTooLongError(
        # Only what the caller can do: truncating instead is the operator's choice (limits.video_policy).
        f"The video is {length}; the limit is {settings.max_video_seconds:g} s. Trim it, or send start/end "
        f"to select a part of at most {settings.max_video_seconds:g} s.",
        limit_seconds=settings.max_video_seconds,
    )


@dataclass(frozen=True)
class _Decoded:
    """A sampled frame whose RGB conversion is deferred to the worker that resizes it."""

    number: int  # frame number
    width: int  # upright size
    height: int
    rgb: Callable[[], np.ndarray]  # () -> (height, width, 3) uint8


def _av_frames(frames: Iterator[tuple[int, Any]]) -> Iterator[_Decoded]:
    for number, frame in frames:
        rotation = frame.rotation
        turned = bool(round(rotation / 90) % 2) if rotation else False
        width, height = (frame.height, frame.width) if turned else (frame.width, frame.height)
        yield _Decoded(number, width, height, _av_rgb(frame, rotation))


def _av_rgb(frame: Any, rotation: int) -> Callable[[], np.ndarray]:
    def convert() -> np.ndarray:
        return _upright(frame.to_ndarray(format="rgb24"), rotation)

    return convert


def _process(
    frames: Iterator[_Decoded], sampled: list[int], settings: VisionSettings
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Convert, resize and patch the frames on the media pool while decoding continues.

    Returns ``pixel_values`` ``(grid_t*grid_h*grid_w, 3*T*p*p)`` and ``grid_thw``.
    """
    position = {number: k for k, number in enumerate(sampled)}
    n = len(sampled)
    tps = settings.temporal_patch_size
    grid_t = -(-n // tps)
    out: np.ndarray | None = None
    target = (0, 0)
    pending: list[Future[None]] = []
    inline = pool_size() == 1
    try:
        for frame in frames:
            if out is None:
                target = video_target_size(n, frame.width, frame.height, settings)
                grid_h, grid_w = target[1] // settings.patch_size, target[0] // settings.patch_size
                out = new_patch_buffer(grid_t, grid_h, grid_w, settings)
            k = position[frame.number]
            # The last frame also fills the padding slots of its group.
            slots = slice(k % tps, tps if k == n - 1 else k % tps + 1)
            if inline:
                _prepare(out[k // tps], frame.rgb, target, slots, settings)
                continue
            pending.append(media_pool().submit(_prepare, out[k // tps], frame.rgb, target, slots, settings))
            if len(pending) > 2 * pool_size():  # bound the decoded frames held in memory
                pending.pop(0).result()
        for future in pending:
            future.result()
    finally:
        for future in pending:
            future.cancel()
    if out is None:
        raise VideoError("The video has no decodable frames.")
    t, bands, cols, m = out.shape[0], out.shape[1], out.shape[2], settings.merge_size
    return out.reshape(t * bands * m * cols * m, -1), (t, bands * m, cols * m)


def _prepare(
    group: np.ndarray,
    rgb: Callable[[], np.ndarray],
    target: tuple[int, int],
    slots: slice,
    settings: VisionSettings,
) -> None:
    """One frame: RGB conversion, Pillow bicubic resize to ``target`` (w, h), patches into ``group``."""
    pixels = rgb()
    if (pixels.shape[1], pixels.shape[0]) != target:
        pixels = np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BICUBIC))
    write_frame(group, pixels, slots, settings)


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``(H, W, 3)`` turned by a display rotation (degrees counterclockwise, multiples of 90)."""
    quarter = round(rotation / 90) % 4 if rotation else 0
    return np.ascontiguousarray(np.rot90(rgb, quarter)) if quarter else rgb


def _from_frames(
    frames: list[FrameInput],
    settings: VisionSettings,
    fps: Fraction,
    clip_start: Fraction,
    clip_end: Fraction | None,
    max_frames: int,
) -> VideoFeatures:
    if not frames:
        raise VideoError("The video has no frames (an empty list was given).")
    times = [Fraction(i) / fps for i in range(len(frames))]
    numbers = [i for i, t in enumerate(times) if t >= clip_start and (clip_end is None or t < clip_end)]
    if not numbers:
        raise VideoError("No frames between start and end.")
    duration = len(numbers) / fps
    limit = Fraction(repr(settings.max_video_seconds))
    truncated = False
    if duration > limit + 1 / (2 * fps):
        if settings.video_policy == "reject":
            raise _too_long(duration, None, clip_start, settings)
        numbers = [i for i in numbers if times[i] < clip_start + limit]
        duration = len(numbers) / fps
        truncated = True
    if len(numbers) > max_frames:
        keep = np.linspace(0, len(numbers) - 1, max_frames).round().astype(np.int64)
        numbers = [numbers[int(i)] for i in keep]
    arrays = {number: _frame_array(frames[number], number) for number in numbers}
    decoded = (_Decoded(n, a.shape[1], a.shape[0], _constant(a)) for n, a in arrays.items())
    pixels, grid = _process(decoded, numbers, settings)
    padded = pad_to_multiple(numbers, settings.temporal_patch_size)
    return VideoFeatures(
        pixel_values=pixels,
        grid_thw=grid,
        frame_indices=padded,
        timestamps=group_timestamps(padded, float(fps), settings.temporal_patch_size),
        source_fps=float(fps),
        duration=float(duration),
        truncated=truncated,
        merge_size=settings.merge_size,
    )


def _constant(array: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: array


def _frame_array(frame: FrameInput, number: int) -> np.ndarray:
    """A frame as ``(H, W, 3)`` uint8, or VideoError saying what was wrong with it."""
    if isinstance(frame, Image.Image):
        return np.asarray(to_rgb(frame))
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if isinstance(frame, np.ndarray):
        kind = f"an array of shape {frame.shape} and dtype {frame.dtype}"
    else:
        kind = f"a {type(frame).__name__}"
    raise VideoError(f"Frame {number} is {kind}; frames must be PIL images or (H, W, 3) uint8 arrays.")


def _seconds(name: str, value: float | None) -> Fraction | None:
    """A user-given time as an exact fraction of its decimal form (0.1 means 1/10)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError) as err:
        raise VideoError(f"{name} must be a number of seconds, got {value!r}.") from err
    if not np.isfinite(seconds) or seconds < 0:
        raise VideoError(f"{name} must be a non-negative number of seconds, got {value!r}.")
    return Fraction(repr(seconds))
