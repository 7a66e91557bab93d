"""load_video against the reference path, plus sampling, clipping, limits and failures."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from vlserve.errors import PayloadTooLargeError, VideoError, VideoTooLongError
from vlserve.media import VisionSettings, count_video_tokens, load_video

CONTAINERS = [
    ("mp4", "libx264", {}),
    ("mp4", "libx264", {"gop": 4}),  # short GOPs: whole GOPs are skipped
    ("mov", "libx264", {"options": {"bf": "3"}}),
    ("matroska", "libx264", {"gop": 7}),
    ("webm", "libvpx", {}),
    ("webm", "libvpx-vp9", {"gop": 5}),
    ("avi", "mjpeg", {"pix_fmt": "yuvj420p"}),
    ("avi", "mpeg4", {"options": {"bf": "2"}}),
    ("mp4", "mpeg4", {"gop": 6}),
]


def _codec_available(codec: str) -> bool:
    return codec in av.codecs_available


@pytest.mark.parametrize(
    ("fmt", "codec", "kwargs"), CONTAINERS, ids=[f"{f}-{c}-{k}" for f, c, k in CONTAINERS]
)
def test_equal_to_reference_path(
    fmt: str,
    codec: str,
    kwargs: dict[str, Any],
    video_reference: Any,
    mt: SimpleNamespace,
    settings: VisionSettings,
) -> None:
    if not _codec_available(codec):
        pytest.skip(f"{codec} encoder not in this PyAV build")
    data = mt.encode_video(fmt, codec, width=100, height=60, fps=10, frames=45, **kwargs)
    expected = video_reference(data, settings)
    features = load_video(data, settings)
    assert features.grid_thw == expected["grid_thw"]
    assert np.array_equal(features.pixel_values, expected["pixel_values"])
    assert features.frame_indices[: len(expected["indices"])] == expected["indices"]
    assert features.timestamps == expected["timestamps"]
    assert features.source_fps == expected["source_fps"]
    assert features.num_tokens == count_video_tokens(len(expected["indices"]), 100, 60, settings)
    assert features.num_tokens == features.grid_thw[0] * features.tokens_per_frame_group


def test_equal_to_reference_with_other_settings(video_reference: Any, mt: SimpleNamespace) -> None:
    settings = VisionSettings(video_max_pixels=32 * 32 * 6, video_min_frames=3, video_fps=3.0)
    data = mt.encode_video("mp4", "libx264", width=160, height=90, fps=24, frames=50, gop=12)
    expected = video_reference(data, settings)
    features = load_video(data, settings)
    assert features.grid_thw == expected["grid_thw"]
    assert np.array_equal(features.pixel_values, expected["pixel_values"])
    assert features.grid_thw[1] * features.grid_thw[2] * 32 * 32 <= 32 * 32 * 6 * 4  # per-frame cap applied


@pytest.mark.parametrize(
    ("fps", "frames", "sample_fps", "expected"),
    [
        (10, 30, 2.0, [0, 6, 12, 17, 23, 29]),  # 3 s -> 6 frames
        (10, 25, 2.0, [0, 6, 12, 18, 24, 24]),  # 2.5 s -> int(5.0)=5 frames, odd: last one repeated
        (30, 60, 1.0, [0, 20, 39, 59]),  # 2 s -> 2 frames, raised to min_frames=4
        (5, 10, 2.0, [0, 3, 6, 9]),  # 2 s -> 4 frames
    ],
)
def test_sampled_frames_and_timestamps(
    fps: int,
    frames: int,
    sample_fps: float,
    expected: list[int],
    mt: SimpleNamespace,
    settings: VisionSettings,
) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=fps, frames=frames)
    features = load_video(data, settings, fps=sample_fps)
    if len(expected) % 2:
        expected = [*expected, expected[-1]]
    assert features.frame_indices == expected
    assert mt.levels_to_indices(mt.slot_levels(features.pixel_values, features.grid_thw, 2)) == expected
    pairs = zip(expected[::2], expected[1::2], strict=True)
    assert features.timestamps == [(a / fps + b / fps) / 2 for a, b in pairs]
    assert features.duration == pytest.approx(frames / fps)
    assert features.source_fps == fps and not features.truncated


def test_odd_sample_count_pads_with_last_frame(mt: SimpleNamespace, settings: VisionSettings) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=25)
    features = load_video(data, settings)
    assert features.frame_indices == [0, 6, 12, 18, 24, 24]
    assert features.grid_thw[0] == 3


def test_min_and_max_frames(mt: SimpleNamespace, settings: VisionSettings) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=40)
    assert load_video(data, settings, max_frames=4).frame_indices == [0, 13, 26, 39]
    assert load_video(data, settings, fps=0.1, min_frames=6).frame_indices == [0, 8, 16, 23, 31, 39]
    short = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=3)
    assert load_video(short, settings).frame_indices == [0, 1, 2, 2]  # capped by the frame count


def test_start_and_end_select_a_clip(mt: SimpleNamespace, settings: VisionSettings) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=60, gop=5)
    features = load_video(data, settings, start=2.0, end=4.0)
    # frames 20..39 (2 s at 10 fps) -> 4 samples, numbered in the source's frame numbering
    assert features.frame_indices == [20, 26, 33, 39]
    assert mt.levels_to_indices(mt.slot_levels(features.pixel_values, features.grid_thw, 2)) == [
        20,
        26,
        33,
        39,
    ]
    assert features.timestamps == [(2.0 + 2.6) / 2, (3.3 + 3.9) / 2]
    assert features.duration == pytest.approx(2.0)
    tail = load_video(data, settings, start=5.0)
    assert tail.frame_indices == [50, 53, 56, 59] and tail.duration == pytest.approx(1.0)
    with pytest.raises(VideoError, match="No frames"):
        load_video(data, settings, start=7.0)
    with pytest.raises(VideoError, match="must be after"):
        load_video(data, settings, start=3.0, end=2.0)


@pytest.fixture(scope="module", params=["mp4", "matroska"])
def forty_seconds(request: pytest.FixtureRequest) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=request.param) as container:
        stream: Any = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(80):
            frame = np.full((16, 16, 3), (8 + 3 * i) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def test_too_long_video_rejected(forty_seconds: bytes, settings: VisionSettings) -> None:
    with pytest.raises(VideoTooLongError) as info:
        load_video(forty_seconds, settings)
    assert info.value.code == 1002
    message = info.value.message
    assert "30 s" in message and "40.0 s" in message and "trim" in message.lower() and "start/end" in message
    assert "truncat" not in message  # the caller cannot choose the operator's policy (6a9bad3)


def test_too_long_video_truncated(forty_seconds: bytes, settings: VisionSettings) -> None:
    truncating = VisionSettings(video_policy="truncate")
    features = load_video(forty_seconds, truncating)
    assert features.truncated and features.duration == pytest.approx(30.0)
    assert features.frame_indices[-1] == 59  # frames 0..59 are the first 30 s at 2 fps
    assert len(features.frame_indices) == 60
    assert features.timestamps[-1] == pytest.approx((58 / 2 + 59 / 2) / 2)
    # A clip inside the limit is fine under either policy.
    assert not load_video(forty_seconds, settings, start=5, end=20).truncated


def test_list_of_frames(mt: SimpleNamespace, settings: VisionSettings) -> None:
    arrays = [np.full((40, 70, 3), mt.frame_level(i), dtype=np.uint8) for i in range(5)]
    frames: list[Any] = [*arrays[:3], *[Image.fromarray(a) for a in arrays[3:]]]
    features = load_video(frames, settings, fps=1.0)
    assert features.frame_indices == [0, 1, 2, 3, 4, 4]
    assert features.timestamps == [0.5, 2.5, 4.0]
    assert features.source_fps == 1.0 and features.duration == 5.0
    assert mt.levels_to_indices(mt.slot_levels(features.pixel_values, features.grid_thw, 2)) == [
        0,
        1,
        2,
        3,
        4,
        4,
    ]
    with pytest.raises(VideoTooLongError):
        load_video(frames * 10, settings, fps=1.0)
    assert load_video(frames * 10, VisionSettings(video_policy="truncate"), fps=1.0).frame_indices[-1] == 29
    with pytest.raises(VideoError, match="uint8"):
        load_video([np.zeros((4, 4, 3), dtype=np.float32)], settings)
    with pytest.raises(VideoError, match="no frames"):
        load_video([], settings)


def test_display_rotation_is_applied(mt: SimpleNamespace, settings: VisionSettings) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=4, rotation=90)
    features = load_video(data, settings)
    _, grid_h, grid_w = features.grid_thw
    assert (grid_h, grid_w) == (4, 2)  # 32 wide x 64 tall after turning
    # The solid left half ends up at the bottom after a 90 degree counterclockwise turn:
    # the last patch (bottom right) is flat, the first (top left) is textured.
    first = features.pixel_values[: grid_h * grid_w]
    assert np.ptp(first[-1, :256]) < 0.05 < np.ptp(first[0, :256])


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00" * 1000, b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x17" * 500, b"not a video at all\n" * 40],
    ids=["empty", "zeros", "broken-avi", "text"],
)
def test_corrupt_input_is_video_error(payload: bytes, settings: VisionSettings) -> None:
    with pytest.raises(VideoError) as info:
        load_video(payload, settings)
    assert info.value.code == 1003


def test_truncated_file_is_video_error_or_decodes(mt: SimpleNamespace, settings: VisionSettings) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=20)
    with pytest.raises(VideoError):
        load_video(data[: len(data) // 3], settings)  # the moov atom is at the end: unreadable


def test_image_or_audio_is_not_a_video(mt: SimpleNamespace, settings: VisionSettings) -> None:
    png = io.BytesIO()
    Image.fromarray(mt.noise_image(32, 32, 0)).save(png, "PNG")
    with pytest.raises(VideoError, match="Supported formats|supported"):
        load_video(png.getvalue(), settings)
    audio = io.BytesIO()
    with av.open(audio, "w", format="matroska") as container:
        stream: Any = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        load_video(audio.getvalue(), settings)


def test_limits(mt: SimpleNamespace) -> None:
    data = mt.encode_video("mp4", "libx264", width=64, height=32, fps=10, frames=10)
    with pytest.raises(PayloadTooLargeError):
        load_video(data, VisionSettings(max_video_bytes=100))
    with pytest.raises(VideoError, match="pixels per frame"):
        load_video(data, VisionSettings(max_image_pixels=1000))
    with pytest.raises(VideoError):
        load_video(data, VisionSettings(), fps=-1)


def test_path_source(tmp_path: Any, mt: SimpleNamespace, settings: VisionSettings) -> None:
    path = tmp_path / "clip.bin"  # no telling extension: the content decides
    path.write_bytes(mt.encode_video("webm", "libvpx", width=64, height=32, fps=10, frames=20))
    assert load_video(path, settings).frame_indices == [0, 6, 13, 19]
    with pytest.raises(VideoError, match="could not be read"):
        load_video(tmp_path / "missing.mp4", settings)
