"""Free chat (the OpenAI-compatible endpoint) as a task, so it takes the same path as every other.

Unlike the registered tasks, a :class:`Chat` is made per request: its prompt is the caller's own
conversation. Media parts of the conversation are fetched and decoded by the service like any
task's inputs and put back in place by index. The answer is the assistant's text, or the tool
calls it made in Qwen3's ``<tool_call>{"name", "arguments"}</tool_call>`` format.

With ``tool_choice`` ``"required"`` or a named function, the answer is forced to be a call: the
assistant's turn starts with ``<tool_call>\\n`` and what follows is constrained to a JSON object
``{"name": ..., "arguments": ...}`` valid against that function's parameter schema.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from vlserve.runtime.protocol import ImagePart, Message, Part, Role, TextPart, ToolCall
from vlserve.tasks.base import InputRules, Task, TaskInput

TOOL_CALL_OPEN = "<tool_call>\n"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class MediaSlot:
    """A media part of the conversation: the ``index``-th image or video of the request."""

    kind: Literal["image", "video"]
    index: int


ChatPart = str | MediaSlot


@dataclass
class ChatTurn:
    role: Role
    parts: list[ChatPart]
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class ChatAnswer:
    content: str | None
    tool_calls: list[ToolCall]

    @property
    def finish_reason(self) -> str | None:
        return "tool_calls" if self.tool_calls else None


class Chat(Task):
    name = "chat"
    summary = "A conversation in the OpenAI chat format (text, images, videos, tools)."
    rules = InputRules(images=(0, 1_000_000), videos=(0, 1_000_000), visual_required=False)
    lane = "interactive"
    system_prompt = ""
    defaults: ClassVar[dict[str, Any]] = {}
    caller_schema = True

    def __init__(self, turns: list[ChatTurn], *, response_schema: dict[str, Any] | None = None,
                 tools: list[dict[str, Any]] | None = None, forced_tools: list[str] | None = None) -> None:
        """``tools``: OpenAI tool definitions shown to the model; ``forced_tools``: names of which
        one must be called (``tool_choice`` required or named), or None to let the model choose."""
        self.turns = turns
        self.response_schema = response_schema
        self.tool_definitions = tools or []
        self.forced_tools = forced_tools

    def schema(self) -> dict[str, Any] | None:
        if self.forced_tools is not None:
            return _call_schema(self.tool_definitions, self.forced_tools)
        return self.response_schema

    def tools(self) -> list[dict[str, Any]]:
        return self.tool_definitions

    def prefill(self) -> str:
        return TOOL_CALL_OPEN if self.forced_tools is not None else ""

    def messages(self, inp: TaskInput) -> list[Message]:
        out = []
        for turn in self.turns:
            parts: list[Part] = []
            for part in turn.parts:
                if isinstance(part, str):
                    parts.append(TextPart(part))
                elif part.kind == "image":
                    parts.append(ImagePart(inp.images[part.index]))
                else:
                    parts.append(inp.videos[part.index])
            out.append(Message(turn.role, parts, list(turn.tool_calls)))
        return out

    def answer(self, text: str, inp: TaskInput) -> ChatAnswer:
        if self.forced_tools is not None:  # the constrained JSON after the prefilled "<tool_call>\n"
            call = json.loads(text)
            return ChatAnswer(None, [_tool_call(call["name"], call["arguments"])])
        return parse_tool_calls(text, {t["function"]["name"] for t in self.tool_definitions})


def parse_tool_calls(text: str, known: set[str]) -> ChatAnswer:
    """Split a free answer into its text and the well-formed calls of ``known`` functions; a block
    that is not such a call stays in the text, so nothing the model wrote is lost."""
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        try:
            call = json.loads(match.group(1))
        except ValueError:
            return match.group(0)
        if (not isinstance(call, dict) or call.get("name") not in known
                or not isinstance(call.get("arguments", {}), dict)):
            return match.group(0)
        calls.append(_tool_call(call["name"], call.get("arguments", {})))
        return ""

    rest = _TOOL_CALL_BLOCK.sub(take, text) if known else text
    if not calls:
        return ChatAnswer(text, [])
    return ChatAnswer(rest.strip() or None, calls)


def _tool_call(name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(name, arguments, id="call_" + uuid.uuid4().hex[:24])


def _call_schema(tools: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    options = []
    for tool in tools:
        function = tool["function"]
        if function["name"] in names:
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            options.append({"type": "object",
                            "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                            "required": ["name", "arguments"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}
