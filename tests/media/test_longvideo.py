"""Long-video sampling: the plan covers the whole duration in order within the budgets, the frames
found by seeking are the right ones (their barcode and colour say which), decoding stays far below
the whole video, and bad or too-long videos are refused with their codes."""

from __future__ import annotations

import io
import math

import av
import numpy as np
import pytest

from vlserve.config import Limits
from vlserve.errors import VideoError, VideoTooLongError
from vlserve.isolation import WorkerLimits, WorkerPool
from vlserve.media import VisionSettings
from vlserve.media.decode import REFUSED, VideoFile
from vlserve.media.longvideo import (
    LongVideoLimits,
    SeekingSampler,
    Window,
    plan_sampling,
    probe_long_video,
    sample_window,
    window_features,
    window_settings,
)
from vlserve.media.video import TOO_COMPLEX
from vlserve.testing.hostile import SDP
from vlserve.testing.videos import read_frame_number, segment_colour, timeline_video

SETTINGS = VisionSettings()
FPS = 10


@pytest.fixture(scope="module")
def clip() -> bytes:
    """20 s at 10 fps, a keyframe every 0.5 s, the colour changing every second."""
    return timeline_video(20, fps=FPS, gop=5)


def covers_in_order(plan, start: float, end: float) -> None:  # type: ignore[no-untyped-def]
    windows = plan.windows
    assert windows[0].start == start and windows[-1].end == end
    for before, after in zip(windows, windows[1:], strict=False):
        assert before.end == pytest.approx(after.start) and before.index + 1 == after.index
    times = [t for w in windows for t in w.times]
    assert times == sorted(times) and len(set(times)) == len(times)
    for w in windows:
        assert all(w.start <= t < w.end for t in w.times)


@pytest.mark.parametrize("duration", [3.0, 60.0, 299.0, 1800.0, 3600.0, 7200.0])
def test_the_plan_covers_the_whole_duration_within_the_budgets(duration: float) -> None:
    limits = LongVideoLimits.from_limits(Limits())
    plan = plan_sampling(duration, limits)
    covers_in_order(plan, 0.0, duration)
    assert plan.frames <= limits.max_frames
    assert all(4 <= len(w.times) <= limits.window_frames and len(w.times) % 2 == 0 for w in plan.windows)
    assert all(w.end - w.start <= limits.window_seconds + 1e-9 for w in plan.windows)
    assert plan.fps <= limits.fps + 1e-9
    # Samples are evenly spread: no gap between neighbours is more than twice the average one.
    times = [t for w in plan.windows for t in w.times]
    gaps = np.diff([0.0, *times, duration])
    assert gaps.max() <= 2 * duration / len(times) + 1e-9


def test_the_sampling_rate_adapts_to_the_length() -> None:
    limits = LongVideoLimits.from_limits(Limits())
    short, hour, two_hours = (plan_sampling(d, limits) for d in (60.0, 3600.0, 7200.0))
    assert short.fps == pytest.approx(2.0)  # limits.long_video_fps for a minute
    assert hour.fps < short.fps and two_hours.fps < hour.fps
    assert hour.frames == two_hours.frames == limits.max_frames  # the frame budget, spread thinner
    assert len(two_hours.windows) == math.ceil(7200 / limits.window_seconds)
    # A caller's options.fps lowers the rate (never raises it past limits.long_video_fps).
    slow = plan_sampling(600.0, limits.at_most(0.1))
    assert slow.frames == 60 and slow.fps == pytest.approx(0.1) and len(slow.windows) == 2
    assert plan_sampling(60.0, limits.at_most(8.0)).fps == pytest.approx(2.0)


def test_a_range_is_planned_and_ranges_past_the_limit_are_refused() -> None:
    limits = LongVideoLimits(max_seconds=600, window_seconds=100)
    covers_in_order(plan_sampling(5000.0, limits, start=1000.0, end=1600.0), 1000.0, 1600.0)
    covers_in_order(plan_sampling(1200.0, limits, start=900.0), 900.0, 1200.0)  # to the end
    with pytest.raises(VideoTooLongError) as err:
        plan_sampling(601.0, limits)
    assert err.value.code == 1002 and "600" in err.value.message
    with pytest.raises(VideoError) as empty:
        plan_sampling(100.0, limits, start=150.0)
    assert empty.value.code == 1003


def test_long_video_limits_must_leave_four_frames_per_window() -> None:
    with pytest.raises(ValueError, match="long_video_max_frames"):
        Limits(long_video_max_seconds=7200, long_video_window_seconds=60, long_video_max_frames=400)
    Limits(long_video_max_seconds=7200, long_video_window_seconds=60, long_video_max_frames=480)


def test_probe_reads_the_duration(clip: bytes) -> None:
    probe = probe_long_video(clip, SETTINGS, LongVideoLimits(), isolated=False)
    assert probe.duration == pytest.approx(20.0) and probe.fps == FPS and (probe.width, probe.height) == (160, 120)


@pytest.mark.parametrize("isolated", [False, True])
def test_seeking_finds_the_frame_at_each_sample_time(clip: bytes, isolated: bool) -> None:
    limits = LongVideoLimits(window_seconds=5.0, fps=1.0, max_frames=40)
    plan = plan_sampling(20.0, limits)
    assert len(plan.windows) == 4
    window = plan.windows[2]  # 10 s .. 15 s: the worker must seek, not start from 0
    sampled = sample_window(clip, window, SETTINGS, limits, isolated=isolated)
    assert sampled.missing == 0 and len(sampled.frames) == len(window.times)
    for wanted, at, frame in zip(window.times, sampled.times, sampled.frames, strict=True):
        assert abs(at - wanted) <= 0.5 / FPS + 1e-9  # the nearest frame
        assert read_frame_number(frame) == round(at * FPS)  # and its time is that frame's
        colour = frame[-1, frame.shape[1] // 2].astype(int)  # the lower half: the second's colour
        assert np.abs(colour - segment_colour(int(at))).max() <= 12
    assert sampled.decoded < 5 * len(window.times)  # about half a GOP per sample, not 10..15 s of frames



@pytest.mark.parametrize(("fmt", "codec"), [("matroska", "libx264"), ("matroska", "libvpx-vp9"), ("avi", "mpeg4")])
def test_seeking_works_in_every_accepted_container(fmt: str, codec: str) -> None:
    video = timeline_video(12, fps=FPS, gop=5, fmt=fmt, codec=codec)
    limits = LongVideoLimits(window_seconds=4.0, fps=1.0, max_frames=12)
    probe = probe_long_video(video, SETTINGS, limits, isolated=False)
    assert probe.duration == pytest.approx(12.0, abs=0.1)
    window = plan_sampling(probe.duration, limits).windows[-1]
    sampled = sample_window(video, window, SETTINGS, limits, isolated=False)
    assert [read_frame_number(f) for f in sampled.frames] == [round(t * FPS) for t in sampled.times]
    assert all(abs(at - t) <= 0.5 / FPS + 1e-9 for at, t in zip(sampled.times, window.times, strict=True))


@pytest.mark.parametrize("bframes", [0, 3])
def test_seeking_gives_the_frames_a_full_decode_would_pick(clip: bytes, bframes: int) -> None:
    """Also with B-frames, which the sampler lets the decoder skip when they come before the time sought."""
    clip = timeline_video(20, fps=FPS, gop=20, bframes=bframes) if bframes else clip
    times = [0.05, 0.31, 3.0, 3.04, 7.77, 7.8, 12.5, 19.95]
    with VideoFile.open(clip, SETTINGS) as video:
        sampler = SeekingSampler(video)
        seeked = [(wanted, sampler.time_of(f), f.to_ndarray(format="rgb24")) for wanted, f in sampler.frames_at(times)]
    reference = []
    pending = list(times)
    with av.open(io.BytesIO(clip)) as container:  # a trusted file of ours: opened directly
        for frame in container.decode(video=0):
            at = float(frame.pts * frame.time_base)
            while pending and at >= pending[0] - 0.5 / FPS:
                reference.append((pending.pop(0), at, frame.to_ndarray(format="rgb24")))
    assert [(w, a) for w, a, _ in seeked] == [(w, a) for w, a, _ in reference]
    assert all(np.array_equal(x, y) for (_, _, x), (_, _, y) in zip(seeked, reference, strict=True))
    # Of 200 frames; with B-frames (GOP 20) about 61 would be decoded if none were skipped.
    assert sampler.decoded < (45 if bframes else 40)


def test_window_features_carry_absolute_timestamps_within_the_token_budget(clip: bytes) -> None:
    limits = LongVideoLimits(window_seconds=10.0, fps=1.0, max_frames=40, window_tokens=128)
    window = plan_sampling(20.0, limits).windows[1]
    sampled = sample_window(clip, window, SETTINGS, limits, isolated=False)
    features = window_features(sampled, SETTINGS)
    assert features.num_tokens <= 128
    assert features.grid_thw[0] == len(sampled.frames) // 2
    pairs = [(sampled.times[i] + sampled.times[i + 1]) / 2 for i in range(0, len(sampled.times), 2)]
    assert features.timestamps == pytest.approx(pairs) and features.timestamps[0] > 10.0
    # A window with an odd number of frames is padded with its last one, as the processor does.
    odd = type(sampled)(sampled.window, sampled.times[:3], sampled.frames[:3], fps=sampled.fps)
    padded = window_features(odd, SETTINGS)
    assert padded.grid_thw[0] == 2 and padded.timestamps[-1] == pytest.approx(sampled.times[2])
    budget = window_settings(SETTINGS, limits).video_total_pixels
    assert sum(f.shape[0] * f.shape[1] for f in sampled.frames) <= budget


def test_a_long_video_is_sampled_in_bounded_memory_without_decoding_it_all() -> None:
    """Ten minutes at 5 fps (3000 frames, keyframe every 2 s) sampled in 10 windows."""
    video = timeline_video(600, fps=5, width=64, height=48, gop=10, barcode=False)
    limits = LongVideoLimits(window_seconds=60.0, max_frames=80, window_frames=8, window_tokens=64)
    probe = probe_long_video(video, SETTINGS, limits, isolated=False)
    plan = plan_sampling(probe.duration, limits)
    covers_in_order(plan, 0.0, probe.duration)
    decoded = frames = 0
    budget = window_settings(SETTINGS, limits).video_total_pixels * 3  # uint8 RGB
    for window in plan.windows:
        sampled = sample_window(video, window, SETTINGS, limits, isolated=False)
        assert len(sampled.frames) == len(window.times) <= limits.window_frames
        assert sum(f.nbytes for f in sampled.frames) <= budget  # one window's frames, whatever the length
        for at, frame in zip(sampled.times, sampled.frames, strict=True):
            assert np.abs(frame[-1, 32].astype(int) - segment_colour(int(at))).max() <= 12
        decoded += sampled.decoded
        frames += len(sampled.frames)
    assert frames == plan.frames <= limits.max_frames
    assert decoded < 3000 / 5  # a fifth of the frames at most: seeking skipped the rest


def test_untrusted_bytes_pass_the_container_whitelist_first(clip: bytes) -> None:
    limits = LongVideoLimits()
    window = Window(0, 0.0, 1.0, (0.5,))
    for hostile in (SDP, b"ffconcat version 1.0\nfile /etc/passwd\n", b"\x00" * 64):
        for call in (lambda d: probe_long_video(d, SETTINGS, limits),
                     lambda d: sample_window(d, window, SETTINGS, limits)):
            with pytest.raises(VideoError) as err:
                call(hostile)
            assert err.value.code == 1003 and err.value.message == REFUSED
    mp4_only = VisionSettings(video_containers=("matroska",))
    with pytest.raises(VideoError, match="not a video this server accepts"):
        probe_long_video(clip, mp4_only, limits)
    with pytest.raises(VideoError) as broken:  # an MP4 cut short: its index points past the end
        probe_long_video(clip[: len(clip) // 3], SETTINGS, limits)
    assert broken.value.code == 1003


def test_a_window_past_the_worker_deadline_is_1003_for_that_job_only(clip: bytes) -> None:
    """A deadline no real decode can meet stands in for a hostile file that decodes for minutes."""
    tight = WorkerPool("video-test", 1, WorkerLimits(wall_seconds=0.05, cpu_seconds=10, memory_bytes=1 << 30))
    limits = LongVideoLimits(window_seconds=20.0, fps=2.0, max_frames=40)
    window = plan_sampling(20.0, limits).windows[0]
    try:
        for _ in range(2):
            with pytest.raises(VideoError) as err:
                sample_window(clip, window, SETTINGS, limits, pool=tight)
            assert err.value.code == 1003 and err.value.message == TOO_COMPLEX
    finally:
        tight.close()
    assert len(sample_window(clip, window, SETTINGS, limits).frames) == 40  # the server's pool is unaffected


def test_times_past_the_real_end_are_reported_missing_not_failed(clip: bytes) -> None:
    """A header may claim more than the stream holds: those sample times simply have no frame."""
    limits = LongVideoLimits(window_seconds=10.0, fps=1.0, max_frames=40)
    beyond = Window(0, 18.0, 26.0, (18.5, 19.5, 22.0, 25.0))
    sampled = sample_window(clip, beyond, SETTINGS, limits, isolated=False)
    assert sampled.missing == 2 and [round(t, 1) for t in sampled.times] == [18.5, 19.5]
    assert window_features(sampled, SETTINGS).grid_thw[0] == 1
    nothing = sample_window(clip, Window(0, 30.0, 40.0, (31.0, 35.0)), SETTINGS, limits, isolated=False)
    assert nothing.frames == [] and nothing.missing == 2
    with pytest.raises(VideoError):
        window_features(nothing, SETTINGS)
