"""Long-video jobs in the service, on the real tiny model: windows cover the whole video in order,
the prompt shows each window's absolute ``<t seconds>`` markers, progress moves window by window,
and bad or too-long videos fail with their codes before any model call."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import make_settings
from vlserve import errors
from vlserve.media.longvideo import LongVideoLimits, plan_sampling, sample_window, window_features
from vlserve.runtime.protocol import GenerationRequest, SamplingParams
from vlserve.scheduling import Scheduler
from vlserve.schemas import InferRequest
from vlserve.service.inference import InferenceService, Outcome
from vlserve.service.longvideo import run_long_video
from vlserve.tasks import TaskInput, get_task
from vlserve.testing.hostile import SDP
from vlserve.testing.videos import timeline_video

LIMITS = {"max_images": 3, "max_tokens": 1024, "long_video_max_seconds": 30, "long_video_window_seconds": 4,
          "long_video_max_frames": 32, "long_video_fps": 1.0, "long_video_window_tokens": 256}


def uri(video: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(video).decode()


@pytest.fixture(scope="module")
def twelve_seconds() -> bytes:
    return timeline_video(12, fps=10, width=96, height=64)


def run(tmp_path: Path, engine: Any, body: dict[str, Any]) -> tuple[Outcome, list[float]]:
    settings = make_settings(tmp_path, limits=LIMITS)
    progress: list[float] = []

    async def main() -> Outcome:
        service = InferenceService(settings, Scheduler(settings.scheduling, {"main": engine}))
        try:
            return await run_long_video(service, InferRequest.model_validate(body), request_id="lv", key_id=None,
                                        progress=progress.append)
        finally:
            await service.aclose()

    return asyncio.run(main()), progress


def test_a_summary_covers_the_video_window_by_window(tmp_path: Path, engine: Any, twelve_seconds: bytes) -> None:
    outcome, progress = run(tmp_path, engine, {"task": "video_summary", "videos": [uri(twelve_seconds)],
                                               "options": {"max_tokens": 40}})
    answer = outcome.answer
    assert [(w["start"], w["end"], w["frames"]) for w in answer["windows"]] == [
        (0.0, 4.0, 4), (4.0, 8.0, 4), (8.0, 12.0, 4)]
    assert answer["duration"] == 12.0
    events = answer["events"]
    assert events == sorted(events, key=lambda e: (e["start"], e["end"]))
    assert all(0 <= e["start"] <= e["end"] <= 12.0 and isinstance(e["text"], str) for e in events)
    for line in filter(None, answer["summary"].splitlines()):
        assert line.startswith(("[0:00:00–0:00:04] ", "[0:00:04–0:00:08] ", "[0:00:08–0:00:12] "))
    # One report after planning, then one per window, ending at 1.
    assert len(progress) == 4 and progress == sorted(set(progress)) and progress[-1] == 1.0
    meta = outcome.metadata.model_dump()
    assert meta["windows"] == 3 and meta["sampled_frames"] == 12 and meta["sampled_fps"] == 1.0
    assert meta["video_tokens"] > 0 and meta["output_tokens"] <= 3 * 40


def test_search_finds_moments_inside_the_range_asked(tmp_path: Path, engine: Any, twelve_seconds: bytes) -> None:
    outcome, _ = run(tmp_path, engine, {"task": "video_search", "text": "the screen turns blue",
                                        "videos": [{"url": uri(twelve_seconds), "start": 2.0, "end": 10.0}],
                                        "options": {"max_tokens": 40}})
    answer = outcome.answer
    assert answer["query"] == "the screen turns blue"
    assert [(w["start"], w["end"]) for w in answer["windows"]] == [(2.0, 6.0), (6.0, 10.0)]
    assert all(2.0 <= m["start"] <= m["end"] <= 10.0 for m in answer["moments"])
    assert sum(w["moments"] for w in answer["windows"]) == len(answer["moments"])


def test_each_window_prompt_carries_its_absolute_timestamps(engine: Any, twelve_seconds: bytes) -> None:
    """The markers are Qwen3-VL's own (``<t seconds>`` before each temporal group, the pair's mean
    time), at the frames' places in the whole video, not restarting at 0 in each window."""
    from vlserve.media import VisionSettings

    vision, limits = VisionSettings(), LongVideoLimits(window_seconds=4, fps=1.0, window_tokens=256)
    plan = plan_sampling(12.0, limits)
    task = get_task("video_summary")
    window = plan.windows[2]
    features = window_features(sample_window(twelve_seconds, window, vision, limits, isolated=False), vision)
    messages = task.window_messages(TaskInput(), plan, window, features)  # type: ignore[attr-defined]
    prompt = engine.prepare(GenerationRequest(messages, SamplingParams(max_tokens=8))).prompt
    assert "<9.0 seconds><|vision_start|><|video_pad|>" in prompt
    assert "<11.0 seconds><|vision_start|><|video_pad|>" in prompt
    assert prompt.count(" seconds><|vision_start|>") == 2
    assert "from 8.0 s to 12.0 s" in prompt


def test_too_long_and_hostile_videos_fail_with_their_codes(tmp_path: Path, engine: Any) -> None:
    too_long = timeline_video(32, fps=2, width=64, height=48, barcode=False)
    with pytest.raises(errors.VideoTooLongError) as err:
        run(tmp_path, engine, {"task": "video_summary", "videos": [uri(too_long)]})
    assert err.value.code == 1002 and "at most 30 s" in err.value.message
    # A part of it within the limit is fine to ask for... (only planned here: no model call needed)
    plan = plan_sampling(32.0, LongVideoLimits(max_seconds=30, window_seconds=4, max_frames=32),
                         start=10.0, end=32.0)
    assert plan.start == 10.0 and plan.end == 32.0
    with pytest.raises(errors.VideoError) as bad:
        run(tmp_path, engine, {"task": "video_summary", "videos": ["data:video/mp4;base64,"
                                                                    + base64.b64encode(SDP).decode()]})
    assert bad.value.code == 1003
    with pytest.raises(errors.RequestError):  # video_search needs a query
        run(tmp_path, engine, {"task": "video_search", "videos": [uri(too_long)]})


def test_a_cancelled_job_leaves_no_lane_place_or_worker_behind(tmp_path: Path, engine: Any,
                                                                twelve_seconds: bytes) -> None:
    """Cancelled after its first window (as a job cancel does): the next window's decode is stopped
    and the video lane is empty again."""
    settings = make_settings(tmp_path, limits=LIMITS)

    async def main() -> dict[str, int]:
        service = InferenceService(settings, Scheduler(settings.scheduling, {"main": engine}))
        first_window = asyncio.Event()

        def progress(value: float) -> None:
            if value > 0.1:
                first_window.set()

        body = InferRequest.model_validate({"task": "video_summary", "videos": [uri(twelve_seconds)],
                                            "options": {"max_tokens": 16}})
        job = asyncio.create_task(run_long_video(service, body, request_id="c", key_id=None, progress=progress))
        try:
            await asyncio.wait_for(first_window.wait(), 300)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            return dict(service.scheduler.lane("video").status())  # type: ignore[arg-type]
        finally:
            await service.aclose()

    status = asyncio.run(main())
    assert status["occupancy"] == 0 and status["running"] == 0 and status["waiting"] == 0
