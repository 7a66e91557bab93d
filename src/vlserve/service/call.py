"""A request in the service's own terms, whichever entry point it came through.

``/infer``, ``/infer_stream`` and async jobs hand the service an :class:`~vlserve.schemas.InferRequest`
(a registered task by name); the OpenAI-compatible endpoint translates a chat request into a
:class:`Call` carrying a per-request :class:`~vlserve.tasks.chat.Chat` task. Either way, the same
limits, admission, input loading, moderation, metrics and audit apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlserve.schemas import DocumentInput, InferOptions, InferRequest, VideoInput
from vlserve.tasks import Task, get_task


@dataclass
class Call:
    """The task, the media references, every piece of caller text, and the options."""

    task: Task
    images: list[str] = field(default_factory=list)
    videos: list[VideoInput] = field(default_factory=list)
    documents: list[DocumentInput] = field(default_factory=list)
    text: str = ""  # the instruction the task reads (``/infer``'s ``text``)
    # Caller text the task sees besides ``text`` (system prompts, chat turns, tool results, tool
    # definitions): all of it counts against ``max_text_chars`` and passes the content policy.
    other_texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    options: InferOptions = field(default_factory=InferOptions)
    logprobs: int | None = None
    job: bool = False  # an async job (POST /jobs): options that take minutes (refine) are allowed

    @classmethod
    def of(cls, request: InferRequest | Call) -> Call:
        if isinstance(request, Call):
            return request
        return cls(
            task=get_task(request.task),
            images=list(request.images),
            videos=[v if isinstance(v, VideoInput) else VideoInput(url=v) for v in request.videos],
            documents=[d if isinstance(d, DocumentInput) else DocumentInput(url=d) for d in request.documents],
            text=request.text,
            labels=list(request.labels),
            options=request.options,
        )

    @property
    def all_text(self) -> list[str]:
        """Every piece of text the caller controls (stop strings are bounded on their own)."""
        return [self.text, *self.other_texts, *self.task.caller_texts(), *self.labels]
