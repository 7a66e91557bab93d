"""``video_summary``: a timestamped summary and the events of a long video (async job only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlserve.tasks.base import TaskInput
from vlserve.tasks.long_video import LongVideoTask, WindowAnswer, clock, span_schema

if TYPE_CHECKING:
    from vlserve.media.longvideo import SamplingPlan, Window

WINDOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 600},
        "events": {"type": "array", "maxItems": 12, "items": span_schema("text", 200)},
    },
    "required": ["summary", "events"],
    "additionalProperties": False,
}


class VideoSummary(LongVideoTask):
    name = "video_summary"
    summary = ("Summarise a long video (up to limits.long_video_max_seconds) with timestamps and list its events "
               "[{start, end, text}] in seconds; async job only (POST /jobs).")
    item_key = "events"
    text_key = "text"
    system_prompt = (
        "You are a video analysis engine. You see one part of a longer video as frames, each group "
        "labelled with its time in seconds from the start of the whole video. Summarise what happens in "
        "this part and list the distinct events with their start and end times in seconds, using the "
        "labelled times. Answer as JSON following the given schema."
    )

    def schema(self) -> dict[str, Any]:
        return WINDOW_SCHEMA

    def window_instruction(self, inp: TaskInput, plan: SamplingPlan, window: Window) -> str:
        focus = f" Pay particular attention to: {inp.text.strip()}" if inp.text.strip() else ""
        return (f"Summarise this part ({window.start:.1f}–{window.end:.1f} s) and list its events with start and "
                f"end times in seconds.{focus}")

    def merge(self, parts: list[WindowAnswer], plan: SamplingPlan, inp: TaskInput) -> dict[str, Any]:
        events = sorted((e for p in parts for e in p.items), key=lambda e: (e["start"], e["end"]))
        lines = [f"[{clock(p.window.start)}–{clock(p.window.end)}] {p.summary}" for p in parts if p.summary]
        return {
            "duration": round(plan.end, 3),
            "summary": "\n".join(lines),
            "events": events,
            "windows": [{**view, "summary": part.summary}
                        for view, part in zip(self.windows_view(parts), parts, strict=True)],
        }
