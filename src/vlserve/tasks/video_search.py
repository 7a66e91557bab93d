"""``video_search``: the moments of a long video matching a text query (async job only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlserve.tasks.base import InputRules, TaskInput
from vlserve.tasks.long_video import LongVideoTask, WindowAnswer, span_schema

if TYPE_CHECKING:
    from vlserve.media.longvideo import SamplingPlan, Window

WINDOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"moments": {"type": "array", "maxItems": 8, "items": span_schema("reason", 200)}},
    "required": ["moments"],
    "additionalProperties": False,
}


class VideoSearch(LongVideoTask):
    name = "video_search"
    summary = ("Find the moments of a long video (up to limits.long_video_max_seconds) matching the query in "
               "'text': [{start, end, reason}] in seconds; async job only (POST /jobs).")
    rules = InputRules(videos=(1, 1), text_required=True)
    item_key = "moments"
    text_key = "reason"
    defaults = {"max_tokens": 384, "temperature": 0.0}
    system_prompt = (
        "You are a video search engine. You see one part of a longer video as frames, each group "
        "labelled with its time in seconds from the start of the whole video. Find every moment in this "
        "part that matches the user's query and give its start and end times in seconds, using the "
        "labelled times, with a short reason. If nothing matches, answer with no moments. Answer as JSON "
        "following the given schema."
    )

    def schema(self) -> dict[str, Any]:
        return WINDOW_SCHEMA

    def window_instruction(self, inp: TaskInput, plan: SamplingPlan, window: Window) -> str:
        return (f"Query: {inp.text.strip()}\n"
                f"List the matching moments between {window.start:.1f} s and {window.end:.1f} s.")

    def merge(self, parts: list[WindowAnswer], plan: SamplingPlan, inp: TaskInput) -> dict[str, Any]:
        moments = sorted((m for p in parts for m in p.items), key=lambda m: (m["start"], m["end"]))
        return {
            "query": inp.text.strip(),
            "duration": round(plan.end, 3),
            "moments": moments,
            "windows": [{**view, "moments": len(part.items)}
                        for view, part in zip(self.windows_view(parts), parts, strict=True)],
        }
