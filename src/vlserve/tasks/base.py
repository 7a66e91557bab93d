"""What a task is: input rules, a role-setting prompt, default options, an output contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from vlserve.config import Recon3D
from vlserve.errors import RequestError, TooManyInputsError
from vlserve.runtime.protocol import ImagePart, Message, Part, TextPart, VideoPart

if TYPE_CHECKING:
    from PIL import Image

    from vlserve.config import Settings
    from vlserve.schemas import InferOptions

Lane = Literal["interactive", "batch", "video"]

#: Options that belong to one task each; any other task refuses them (4000) rather than ignore them.
TASK_OPTIONS = ("json_schema", "history", "render")


@dataclass(frozen=True)
class InputRules:
    """How many inputs of each kind a task takes, as inclusive ``(min, max)`` ranges."""

    images: tuple[int, int] = (0, 0)
    videos: tuple[int, int] = (0, 0)
    documents: tuple[int, int] = (0, 0)
    text_required: bool = False
    # Tasks that read pages accept images and documents interchangeably; at least one is needed.
    visual_required: bool = True

    def check(self, *, images: int, videos: int, documents: int, text: str) -> None:
        for kind, count, (low, high) in (
            ("images", images, self.images),
            ("videos", videos, self.videos),
            ("documents", documents, self.documents),
        ):
            if count > high:
                raise TooManyInputsError(f"this task takes at most {high} {kind}, got {count}", kind=kind)
            if count < low:
                raise RequestError(f"this task needs at least {low} {kind}, got {count}", kind=kind)
        if self.visual_required and images + videos + documents == 0:
            raise RequestError("this task needs at least one image, video or document")
        if self.text_required and not text.strip():
            raise RequestError("this task needs a question or instruction in 'text'")

    def describe(self) -> dict[str, Any]:
        return {
            "images": list(self.images),
            "videos": list(self.videos),
            "documents": list(self.documents),
            "text_required": self.text_required,
        }


@dataclass
class TaskInput:
    """A request's inputs after fetching and decoding."""

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    videos: list[VideoPart] = field(default_factory=list)
    pages: list[Image.Image] = field(default_factory=list)  # rendered document pages, in order
    labels: list[str] = field(default_factory=list)  # optional per-image labels (view names, ...)
    artifacts_dir: Path | None = None  # where a task may write files for the caller
    artifacts_url: str = ""  # the URL prefix those files are served under
    recon3d: Recon3D | None = None  # the server's 3D limits (None: the defaults)
    formats: list[str] | None = None  # files a 3D task should write (None: its default)


class Task:
    """Base class: subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    rules: InputRules  # set on the class; a configured copy may widen it (a refining multiview_3d job)
    lane: ClassVar[Lane] = "interactive"
    system_prompt: ClassVar[str]
    default_instruction: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"max_tokens": 512}
    caller_schema: ClassVar[bool] = False  # True: schema() comes from the caller and is bounded as input
    task_options: ClassVar[tuple[str, ...]] = ()  # which of TASK_OPTIONS this task reads
    # answer() runs in a worker thread (3D builds, renders, schema checks take milliseconds to
    # seconds) unless the task declares it light: a few string operations on the model's text,
    # bounded by max_tokens, where the hop to a thread and back costs more than the work.
    light_answer: ClassVar[bool] = False

    def configure(self, options: InferOptions, settings: Settings) -> Task:
        """The task for one request. Tasks that read per-request options (a caller's schema, an
        agent's history) return a configured copy, checked against ``settings`` before any input is
        fetched; the others are shared as they are."""
        for name in TASK_OPTIONS:
            if name not in self.task_options and getattr(options, name, None) not in (None, False):
                raise RequestError(f"options.{name} is not an option of task {self.name!r}", param=name)
        return self

    def caller_texts(self) -> list[str]:
        """Caller text the task puts in the prompt besides ``text`` (counted against
        ``limits.max_text_chars`` and passed through the content policy like it)."""
        return []

    def schema(self) -> dict[str, Any] | None:
        """A JSON Schema the answer is constrained to, or None for free text."""
        return None

    def tools(self) -> list[dict[str, Any]]:
        """Function definitions shown to the model (OpenAI's tool format); none by default."""
        return []

    def prefill(self) -> str:
        """Text the model's answer is made to start with (not part of the answer)."""
        return ""

    def prepare(self, inp: TaskInput) -> list[str]:
        """Adjust the decoded inputs before prompting; returns warnings for the caller."""
        return []

    def instruction(self, inp: TaskInput) -> str:
        return inp.text.strip() or self.default_instruction

    def messages(self, inp: TaskInput) -> list[Message]:
        parts: list[Part] = []
        for i, image in enumerate(inp.images):
            if inp.labels and i < len(inp.labels) and inp.labels[i]:
                parts.append(TextPart(f"View {i + 1} ({inp.labels[i]}):"))
            parts.append(ImagePart(image))
        for page_no, page in enumerate(inp.pages, start=1):
            parts.append(TextPart(f"Page {page_no}:"))
            parts.append(ImagePart(page))
        parts.extend(inp.videos)
        parts.append(TextPart(self.instruction(inp)))
        return [Message("system", self.system_prompt), Message("user", parts)]

    def answer(self, text: str, inp: TaskInput) -> Any:
        """Turn the model's text into the task's answer."""
        return text.strip()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "lane": self.lane,
            "inputs": self.rules.describe(),
            "defaults": dict(self.defaults),
            "structured": self.schema() is not None,
        }
