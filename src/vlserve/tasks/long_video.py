"""What the long-video tasks share: windows shown with absolute timestamps, one JSON answer each, merged.

A long-video task (``video_summary``, ``video_search``) never sees the whole video at once: the
service (``vlserve.service.longvideo``) samples it in windows (``vlserve.media.longvideo``) and
asks the model once per window, with the window's frames labelled by Qwen3-VL's own
``<t seconds>`` markers at their absolute place in the video, for a schema-constrained JSON answer.
The task says what to ask (:meth:`LongVideoTask.window_instruction`, :meth:`schema`), how to read one
window's answer (:meth:`LongVideoTask.window_answer`: times clipped to the window) and how the
windows make the final answer (:meth:`LongVideoTask.merge`). These tasks run as async jobs only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from vlserve.runtime.protocol import ImagePart, Message, Part, TextPart, VideoPart
from vlserve.tasks.base import InputRules, Task, TaskInput

if TYPE_CHECKING:
    from vlserve.media import VideoFeatures
    from vlserve.media.longvideo import SamplingPlan, Window
    from vlserve.media.timed_frames import TimedImage

#: Times the model may write, in seconds (bounded so a number always fits; clipped to the window after).
SECONDS = {"type": "number", "minimum": 0, "maximum": 86_400}


def span_schema(text_key: str, max_chars: int) -> dict[str, Any]:
    """``{"start", "end", text_key}``: one timed item of a window's answer."""
    return {
        "type": "object",
        "properties": {"start": SECONDS, "end": SECONDS, text_key: {"type": "string", "maxLength": max_chars}},
        "required": ["start", "end", text_key],
        "additionalProperties": False,
    }


def clock(seconds: float) -> str:
    """``H:MM:SS`` (how people write times in a video: 1:23:00)."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def clip_span(start: Any, end: Any, window: Window) -> tuple[float, float] | None:
    """``[start, end]`` (either order) cut to the window, in 0.1 s; None when it lies outside it."""
    try:
        lo, hi = sorted((float(start), float(end)))
    except (TypeError, ValueError):
        return None
    if hi < window.start or lo > window.end:
        return None  # the model named a time it was not shown
    return round(max(lo, window.start), 1), round(min(hi, window.end), 1)


@dataclass
class WindowAnswer:
    """One window's answer after reading: ``items`` have ``start``/``end`` inside the window."""

    window: Window
    frames: int
    summary: str
    items: list[dict[str, Any]]


class LongVideoTask(Task):
    """Base of the long-video tasks: one video of up to ``limits.long_video_max_seconds``, as a job."""

    lane = "video"
    jobs_only: ClassVar[bool] = True  # /infer answers 4000: these run on POST /jobs
    rules = InputRules(videos=(1, 1))
    defaults = {"max_tokens": 512, "temperature": 0.0}
    item_key: ClassVar[str]  # "events" or "moments"
    text_key: ClassVar[str]  # the text field of an item: "text" or "reason"

    def window_instruction(self, inp: TaskInput, plan: SamplingPlan, window: Window) -> str:
        raise NotImplementedError

    def window_messages(self, inp: TaskInput, plan: SamplingPlan, window: Window,
                        features: VideoFeatures) -> list[Message]:
        """The prompt for one window: where it lies in the video, its frames, what to answer."""
        return [Message("system", self.system_prompt),
                Message("user", [self._where(plan, window), VideoPart(features),
                                 TextPart(self.window_instruction(inp, plan, window))])]

    def window_image_messages(self, inp: TaskInput, plan: SamplingPlan, window: Window,
                              images: list[TimedImage]) -> list[Message]:
        """The same prompt for an engine that takes no decoded video: each frame an image (sent as
        JPEG) after its ``<t seconds>`` marker at its absolute time, as Qwen3-VL writes them."""
        frames: list[Part] = []
        for item in images:
            frames += [TextPart(f"<{item.time:.1f} seconds>"), ImagePart(item.image, encoding="jpeg")]
        return [Message("system", self.system_prompt),
                Message("user", [self._where(plan, window), *frames,
                                 TextPart(self.window_instruction(inp, plan, window))])]

    @staticmethod
    def _where(plan: SamplingPlan, window: Window) -> TextPart:
        return TextPart(
            f"This is part {window.index + 1} of {len(plan.windows)} of a video {plan.end:.1f} seconds long: "
            f"the frames from {window.start:.1f} s to {window.end:.1f} s. Each group of frames is preceded "
            "by its time in seconds from the start of the whole video."
        )

    def window_answer(self, text: str, window: Window, frames: int) -> WindowAnswer:
        """One window's JSON answer, its times clipped to the window and sorted."""
        data = json.loads(text)
        items = []
        for item in data.get(self.item_key, []):
            span = clip_span(item.get("start"), item.get("end"), window)
            if span is not None:
                items.append({"start": span[0], "end": span[1], self.text_key: str(item.get(self.text_key, ""))})
        items.sort(key=lambda item: (item["start"], item["end"]))
        return WindowAnswer(window, frames, str(data.get("summary", "")).strip(), items)

    def merge(self, parts: list[WindowAnswer], plan: SamplingPlan, inp: TaskInput) -> dict[str, Any]:
        """The final answer from the windows' answers, in window order."""
        raise NotImplementedError

    @staticmethod
    def windows_view(parts: list[WindowAnswer]) -> list[dict[str, Any]]:
        return [{"start": round(p.window.start, 3), "end": round(p.window.end, 3), "frames": p.frames}
                for p in parts]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "jobs_only": True}
