from __future__ import annotations

from vlserve.tasks.base import InputRules, Task


class VideoQA(Task):
    name = "video_qa"
    summary = "Answer a question about a video (sampled frames carry timestamps)."
    rules = InputRules(videos=(1, 1), text_required=True)
    lane = "video"
    system_prompt = (
        "You are a video understanding assistant. The video is given as frames with timestamps. "
        "Answer the question using what happens over time; cite timestamps in seconds when useful."
    )
    defaults = {"max_tokens": 256, "temperature": 0.0}
