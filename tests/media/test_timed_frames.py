"""window_images: a window's frames as timestamped images, one per temporal pair at the pair's mean time
(the video path's marker times), thinned evenly to the token budget; the long-video prompt built from them
puts Qwen3-VL's ``<t seconds>`` marker before each image, at absolute times, images as JPEG."""

from __future__ import annotations

import numpy as np

from vlserve.media import VisionSettings, count_image_tokens
from vlserve.media.longvideo import SampledWindow, SamplingPlan, Window
from vlserve.media.timed_frames import window_images
from vlserve.runtime.protocol import ImagePart, TextPart
from vlserve.tasks import get_task
from vlserve.tasks.base import TaskInput


def sampled(times: list[float], height: int = 64, width: int = 96) -> SampledWindow:
    frames = [np.full((height, width, 3), i * 10, np.uint8) for i in range(len(times))]
    return SampledWindow(Window(0, times[0], times[-1] + 1, tuple(times)), list(times), frames)


def test_one_image_per_pair_at_the_pairs_mean_time() -> None:
    vision = VisionSettings()
    window = sampled([600.0, 601.0, 602.0, 603.0, 604.0])  # odd: the last pair is one frame
    images = window_images(window, vision, token_budget=10_000)
    assert [i.time for i in images] == [600.5, 602.5, 604.0]
    assert [int(np.asarray(i.image)[0, 0, 0]) for i in images] == [0, 20, 40]  # each pair's first frame
    assert all(i.tokens == count_image_tokens(96, 64, vision) for i in images)


def test_thinned_evenly_to_the_budget() -> None:
    vision = VisionSettings()
    per = count_image_tokens(96, 64, vision)
    window = sampled([float(t) for t in range(20)])  # 10 pairs
    images = window_images(window, vision, token_budget=4 * per + per // 2)
    assert len(images) == 4 and sum(i.tokens for i in images) <= 4 * per + per // 2
    assert [i.time for i in images] == [0.5, 6.5, 12.5, 18.5]  # first and last pairs kept, evenly between
    assert [i.time for i in window_images(window, vision, 10_000, max_images=3)] == [0.5, 8.5, 18.5]  # upstream's cap
    assert len(window_images(window, vision, token_budget=1)) == 1  # never none
    assert window_images(SampledWindow(window.window, [], []), vision, 100) == []


def test_the_prompt_marks_each_image_with_its_absolute_time() -> None:
    task = get_task("video_summary")
    window = Window(1, 300.0, 600.0, (300.0, 301.0, 302.0, 303.0))
    plan = SamplingPlan(0.0, 900.0, 1.0, (Window(0, 0.0, 300.0, ()), window, Window(2, 600.0, 900.0, ())))
    images = window_images(sampled([300.0, 301.0, 302.0, 303.0]), VisionSettings(), 10_000)
    (_, user) = task.window_image_messages(TaskInput(), plan, window, images)  # type: ignore[attr-defined]
    parts = user.parts
    assert isinstance(parts[0], TextPart) and "part 2 of 3" in parts[0].text
    assert [(type(p).__name__, getattr(p, "text", None)) for p in parts[1:5]] == [
        ("TextPart", "<300.5 seconds>"), ("ImagePart", None), ("TextPart", "<302.5 seconds>"), ("ImagePart", None)]
    assert all(p.encoding == "jpeg" for p in parts if isinstance(p, ImagePart))
    assert isinstance(parts[-1], TextPart) and parts[-1].text == task.window_instruction(  # type: ignore[attr-defined]
        TaskInput(), plan, window)
