"""Demux and decode videos with PyAV, decoding as little as the sampled frames need.

Frame numbering is the reference's: the i-th frame a full, sequential decode
would output (presentation order). It is recovered without decoding by
demuxing: one packet per frame, so the sorted packet timestamps are the
frames' timestamps (packets flagged *discard* by the demuxer, such as those cut
by an MP4 edit list, produce no frame and are not counted).

Decoding then skips, without changing a single decoded pixel:

* whole GOPs holding no sampled frame (the decoder is drained and flushed,
  as after a seek, and restarted at the next keyframe); a GOP whose leading
  pictures reference the previous one (open GOP) keeps that one too;
* the tail of a GOP after its last sampled frame;
* non-reference frames that are not sampled (``skip_frame = NONREF`` for their
  packet only): by definition no other frame is predicted from them.

Only sampled frames are converted to RGB. If the timestamps are unusable
(missing or repeated) or a sampled frame does not come out of the decoder, the
caller falls back to ``decode_sequential``: a full decode that numbers frames
by output order, exactly as the reference does.

What FFmpeg may open (``open_container``): only bytes in memory, only after
their container was recognised from its signature (``sniff_container``) and
found on ``settings.video_containers``, and only with that container's demuxer
(``format=``), never FFmpeg's own format guessing. So text formats FFmpeg would
read as media (an SDP description opening UDP sockets, an ffconcat script or
HLS playlist naming other files or URLs, image-sequence patterns) never reach
a demuxer, and every such refusal is the one message ``REFUSED``. The
protocol whitelist is empty of anything real and MOV external references are
off, so even a whitelisted container cannot make FFmpeg open a file or socket.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.container
import av.stream
from av.video.stream import VideoStream

from vlserve.errors import PayloadTooLargeError, VideoError
from vlserve.inputs.sniff import sniff_container
from vlserve.media.settings import VisionSettings

__all__ = [
    "REFUSED",
    "SUPPORTED_VIDEO_FORMATS",
    "FrameIndex",
    "MissingFramesError",
    "VideoFile",
    "check_signature",
    "open_container",
    "plan_segments",
    "read_video_bytes",
]

SUPPORTED_VIDEO_FORMATS = ("MP4", "MOV", "AVI", "WEBM", "MKV")
_SUPPORTED_TEXT = "MP4, MOV, AVI, WEBM and MKV"
# FFmpeg demuxer names (content-sniffed) that correspond to the formats above.
# The one demuxer each sniffed container is opened with.
_DEMUXER_OF = {"mp4": "mov", "matroska": "matroska", "avi": "avi", "mpegts": "mpegts"}
# FFmpeg's names for them (its long form when it guessed the format itself).
_DEMUXERS = frozenset({*_DEMUXER_OF.values(), "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# One message for every file refused before FFmpeg sees it: it says nothing of why, so a sender
# cannot learn what exists on the server from the difference between two refusals.
REFUSED = f"The file is not a video this server accepts. Supported formats: {_SUPPORTED_TEXT}."
_CONTAINER_OPTIONS = {
    # No real protocol is named, so no nested open (file, network, concat, data, ...) can succeed.
    "protocol_whitelist": "none",
    "enable_drefs": "0",  # MOV: never follow references to external media files
    "use_absolute_path": "0",
}
# Demuxing stops this far past the last second that can matter (timestamps of
# packets in decode order run slightly behind presentation order).
_STOP_MARGIN = Fraction(1)
_THREAD_TYPE = "AUTO"
_THREAD_COUNT = 0  # FFmpeg's choice: one per core, plus one


class MissingFramesError(Exception):
    """A sampled frame did not come out of the selective decoder: use the sequential path."""


@dataclass
class FrameIndex:
    """The frames of the video stream, in presentation order, up to the stop time.

    ``times[i]`` is frame i's time in seconds since the first frame (exact).
    ``complete`` is False when demuxing stopped early at the stop time, so more
    frames exist after the last one listed.
    """

    times: list[Fraction]
    fps: Fraction
    complete: bool
    pts: list[int] | None = None  # frame timestamps (stream time base); None: number by output order
    # Decode-order packets and their GOP structure; only for the timestamp path.
    packets: list[Any] = field(default_factory=list)


class VideoFile:
    """An opened container and its first video stream; a context manager.

    Construct with ``VideoFile.open``. All PyAV exceptions escape unchanged:
    ``load_video`` translates them in one place.
    """

    def __init__(self, container: av.container.InputContainer, stream: VideoStream, reopen: Any) -> None:
        self.container = container
        self.stream = stream
        self._reopen = reopen

    @classmethod
    def open(cls, source: bytes | str | os.PathLike[str], settings: VisionSettings) -> VideoFile:
        """Open ``source`` (bytes, or a path read into memory), checking size, container and stream."""
        data = read_video_bytes(source, settings)

        def reopen() -> av.container.InputContainer:
            return open_container(data, settings)

        container = reopen()
        try:
            stream = _check_container(container, settings)
        except BaseException:
            container.close()
            raise
        return cls(container, stream, reopen)

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def metadata_duration(self) -> float | None:
        """Seconds, from the stream or container header (may be absent or rough)."""
        if self.stream.duration is not None and self.stream.time_base is not None:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration is not None:
            return self.container.duration / 1_000_000
        return None

    def index(self, stop_after: Fraction | None) -> FrameIndex:
        """Demux (no decoding) the frames up to ``stop_after`` seconds."""
        stream = self.stream
        time_base = stream.time_base or Fraction(1, 90000)
        origin = stream.start_time
        stop_ticks: int | None = None
        packets: list[Any] = []
        complete = True
        for packet in self.container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if origin is None and packet.pts is not None:
                origin = packet.pts
            if stop_after is not None and stop_ticks is None and origin is not None:
                stop_ticks = origin + int((stop_after + _STOP_MARGIN) / time_base)
            # pts >= dts, so once dts passes the stop no later packet is shown before it. Without dts
            # (Matroska) pts is used: reordering shifts it by a few frames, far less than the margin.
            clock = packet.dts if packet.dts is not None else packet.pts
            if stop_ticks is not None and clock is not None and clock > stop_ticks:
                complete = False
                break
            packets.append(packet)
        stamps = [p.pts for p in packets if not p.is_discard]
        if not stamps:
            raise VideoError("The video has no frames.")
        fps = _stream_fps(stream)
        if any(s is None for s in stamps) or len(set(stamps)) != len(stamps):
            return self.index_by_decoding(stop_after, fps=fps)
        stamps.sort()
        first = stamps[0]
        times = [(s - first) * time_base for s in stamps]
        if fps is None:
            fps = _estimate_fps(times)
        return FrameIndex(times=times, fps=fps, complete=complete, pts=stamps, packets=packets)

    def index_by_decoding(self, stop_after: Fraction | None, *, fps: Fraction | None = None) -> FrameIndex:
        """Count frames by decoding everything (the fallback); frame i is at ``i / fps``."""
        fps = fps if fps is not None else _stream_fps(self.stream)
        fps = fps if fps is not None else Fraction(30)
        limit = None if stop_after is None else stop_after + _STOP_MARGIN
        count = 0
        complete = True
        for _frame in self._sequential_frames():
            if limit is not None and Fraction(count) / fps > limit:
                complete = False
                break
            count += 1
        if count == 0:
            raise VideoError("The video has no decodable frames.")
        return FrameIndex(times=[Fraction(i) / fps for i in range(count)], fps=fps, complete=complete)

    def decode(self, index: FrameIndex, wanted: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """Yield ``(frame_number, av.VideoFrame)`` for each distinct wanted frame number.

        Raises MissingFramesError (before or after yielding) when the selective
        path cannot deliver every wanted frame; the caller starts over with
        ``decode_sequential``.
        """
        if index.pts is None:
            yield from self.decode_sequential(wanted)
            return
        by_pts = {index.pts[i]: i for i in wanted}
        packets = index.packets
        segments = plan_segments(
            [bool(p.is_keyframe) for p in packets], [p.pts for p in packets], set(by_pts)
        )
        codec = self.stream.codec_context
        remaining = set(by_pts)
        previous_end: int | None = None
        for start, end in segments:
            if previous_end is not None and start != previous_end:
                yield from _take(codec.decode(None), by_pts, remaining)
                codec.flush_buffers()
            for packet in packets[start:end]:
                codec.skip_frame = "DEFAULT" if packet.pts in by_pts else "NONREF"
                yield from _take(codec.decode(packet), by_pts, remaining)
            previous_end = end
            if not remaining:
                break
        codec.skip_frame = "DEFAULT"
        yield from _take(codec.decode(None), by_pts, remaining)
        if remaining:
            raise MissingFramesError(f"{len(remaining)} sampled frames were not produced")

    def decode_sequential(self, wanted: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """Decode from the start, numbering frames by output order (the reference's way)."""
        targets = set(wanted)
        last = max(targets) if targets else -1
        for number, frame in enumerate(self._sequential_frames()):
            if number in targets:
                yield number, frame
            if number >= last:
                return

    def _sequential_frames(self) -> Iterator[Any]:
        """Every frame from the beginning, in a fresh container so earlier reads do not matter."""
        container = self._reopen()
        stream = container.streams[self.stream.index]
        _use_threads(stream)
        try:
            yield from container.decode(stream)
        finally:
            container.close()


def read_video_bytes(source: bytes | str | os.PathLike[str], settings: VisionSettings) -> bytes:
    """``source`` as bytes in memory, within ``max_video_bytes``: FFmpeg never opens a path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = os.fspath(source)
        try:
            size = os.path.getsize(path)
            if size > settings.max_video_bytes:
                raise PayloadTooLargeError(
                    f"The video is {size:,} bytes; the limit is {settings.max_video_bytes:,} bytes."
                )
            with open(path, "rb") as fh:
                data = fh.read(settings.max_video_bytes + 1)
        except OSError as err:
            raise VideoError(f"The video file could not be read: {path}") from err
    if len(data) > settings.max_video_bytes:
        raise PayloadTooLargeError(
            f"The video is {len(data):,} bytes; the limit is {settings.max_video_bytes:,} bytes."
        )
    if not data:
        raise VideoError("The video is empty (0 bytes).")
    return data


def open_container(data: bytes, settings: VisionSettings) -> av.container.InputContainer:
    """Open ``data`` with the demuxer of its sniffed container, or raise VideoError(REFUSED).

    The container must be on ``settings.video_containers``; FFmpeg gets an in-memory buffer, an
    explicit format and options that forbid every nested open (see the module docstring).
    """
    container = check_signature(data, settings)
    return av.open(
        io.BytesIO(data), mode="r", format=_DEMUXER_OF[container], container_options=dict(_CONTAINER_OPTIONS)
    )


def check_signature(data: bytes, settings: VisionSettings) -> str:
    """The container of ``data`` if it is on ``settings.video_containers``; otherwise VideoError(REFUSED)."""
    container = sniff_container(data)
    if container is None or container not in settings.video_containers:
        raise VideoError(REFUSED)
    return container


def plan_segments(
    keyframes: Sequence[bool], pts: Sequence[int | None], targets: set[int]
) -> list[tuple[int, int]]:
    """Packet ranges ``[start, end)`` (decode order) to send to the decoder.

    ``keyframes[k]``/``pts[k]`` describe packet k. A GOP runs from a keyframe to
    the packet before the next one (packets before the first keyframe belong
    to the first GOP). A GOP is sent if it holds a target, up to its last
    target packet, or whole when the next sent GOP is open (has leading
    pictures shown before its keyframe, which reference this GOP).
    Adjacent ranges are merged.
    """
    count = len(pts)
    starts = [k for k in range(count) if keyframes[k]]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts[1:], count]
    gops = list(zip(starts, bounds, strict=True))
    last_target: list[int | None] = []
    open_gop: list[bool] = []
    for start, end in gops:
        hits = [k for k in range(start, end) if pts[k] in targets]
        last_target.append(hits[-1] if hits else None)
        key_pts = pts[start]
        open_gop.append(
            key_pts is not None and any(p is not None and p < key_pts for p in pts[start + 1 : end])
        )
    needed_end: list[int | None] = [None if t is None else t + 1 for t in last_target]
    # Walk backwards: an open GOP that is sent needs all of the GOP before it.
    for j in range(len(gops) - 1, 0, -1):
        if needed_end[j] is not None and open_gop[j]:
            needed_end[j - 1] = gops[j - 1][1]
    segments: list[tuple[int, int]] = []
    for (start, _end), stop in zip(gops, needed_end, strict=True):
        if stop is None:
            continue
        if segments and segments[-1][1] == start:
            segments[-1] = (segments[-1][0], stop)
        else:
            segments.append((start, stop))
    return segments


def _take(frames: Any, by_pts: dict[int, int], remaining: set[int]) -> Iterator[tuple[int, Any]]:
    for frame in frames:
        if frame.pts in remaining:
            remaining.discard(frame.pts)
            yield by_pts[frame.pts], frame


def _check_container(container: av.container.InputContainer, settings: VisionSettings) -> VideoStream:
    if container.format.name not in _DEMUXERS:
        raise VideoError(REFUSED)
    stream = _first_video_stream(container)
    codec = stream.codec_context
    if codec.width * codec.height > settings.max_image_pixels:
        raise VideoError(
            f"The video frames are {codec.width}x{codec.height} pixels; the limit is "
            f"{settings.max_image_pixels:,} pixels per frame."
        )
    _use_threads(stream)
    return stream


def _use_threads(stream: VideoStream) -> None:
    """Decode with FFmpeg's threads: frame threads decode several frames at once."""
    stream.thread_type = _THREAD_TYPE
    stream.codec_context.thread_count = _THREAD_COUNT


def _first_video_stream(container: av.container.InputContainer) -> VideoStream:
    for stream in container.streams.video:
        # Cover art in audio files is a one-picture "video" stream, not a video.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise VideoError(f"The file has no video stream. Supported formats: {_SUPPORTED_TEXT}.")


def _stream_fps(stream: VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _estimate_fps(times: list[Fraction]) -> Fraction:
    if len(times) > 1 and times[-1] > 0:
        return (len(times) - 1) / times[-1]
    return Fraction(30)
