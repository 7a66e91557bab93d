"""The tasks of the API, one module each, looked up by name.

A task decides which inputs it takes, how the model is prompted, which options it defaults to,
whether its answer is schema-constrained, and how the model's text becomes the answer.
"""

from __future__ import annotations

from vlserve.errors import UnknownTaskError
from vlserve.tasks.base import InputRules, Lane, Task, TaskInput
from vlserve.tasks.captioning import Captioning
from vlserve.tasks.chart_parse import ChartParse
from vlserve.tasks.doc_analyze import DocAnalyze
from vlserve.tasks.doc_parse import DocParse
from vlserve.tasks.extract import Extract
from vlserve.tasks.grounding import Grounding
from vlserve.tasks.gui_action import GuiAction
from vlserve.tasks.multiview_3d import Multiview3D
from vlserve.tasks.ocr import OCR
from vlserve.tasks.video_qa import VideoQA
from vlserve.tasks.video_search import VideoSearch
from vlserve.tasks.video_summary import VideoSummary
from vlserve.tasks.visual_coding import VisualCoding
from vlserve.tasks.vqa import VQA

TASKS: dict[str, Task] = {
    t.name: t
    for t in (VQA(), Captioning(), ChartParse(), VideoQA(), DocAnalyze(), OCR(), Grounding(), Multiview3D())
}
# Long videos, analysed window by window as async jobs only (vlserve.service.longvideo).
TASKS.update((t.name, t) for t in (VideoSummary(), VideoSearch()))
# Qwen3-VL's further task families (one module each).
TASKS.update((t.name, t) for t in (VisualCoding(), GuiAction(), DocParse(), Extract()))


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}", task=name) from None


def register(task: Task) -> None:
    """Add a task (used by optional features such as 3D reconstruction)."""
    TASKS[task.name] = task


__all__ = ["TASKS", "InputRules", "Lane", "Task", "TaskInput", "get_task", "register"]
