"""gui_action: a screenshot, an instruction and the steps so far → the next GUI action.

The model is prompted the way Qwen3-VL's computer-use cookbook prompts it: the ``computer_use``
function is shown as a tool on a 1000 × 1000 screen (Qwen3-VL's relative coordinates), the
instruction and the task's progress go in the user turn, and the answer is a Qwen3 tool call
``<tool_call>{"name": "computer_use", "arguments": {"action": ..., ...}}</tool_call>``. Here the
call is forced and schema-constrained (each action with exactly its own arguments), and turned
into a typed action whose coordinates are pixels of the original screenshot.
"""

from __future__ import annotations

import json
from typing import Any

from vlserve.config import Settings
from vlserve.errors import RequestError
from vlserve.runtime.protocol import ImagePart, Message, TextPart
from vlserve.schemas import InferOptions
from vlserve.tasks.base import InputRules, Task, TaskInput
from vlserve.tasks.chat import TOOL_CALL_OPEN
from vlserve.tasks.coords import RELATIVE_SCALE, point_to_pixels

FUNCTION = "computer_use"
_POINT = {"type": "array", "minItems": 2, "maxItems": 2,
          "items": {"type": "integer", "minimum": 0, "maximum": RELATIVE_SCALE}}
_CLICKS = {"left_click": ("left", 1), "right_click": ("right", 1), "middle_click": ("middle", 1),
           "double_click": ("left", 2), "triple_click": ("left", 3)}


def _action(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"action": {"const": name}, **arguments},
            "required": ["action", *arguments], "additionalProperties": False}


#: One schema per action of the cookbook's ``computer_use`` tool, each with exactly its arguments.
ARGUMENT_SCHEMAS: list[dict[str, Any]] = [
    *(_action(name, coordinate=_POINT) for name in (*_CLICKS, "mouse_move", "left_click_drag")),
    _action("type", text={"type": "string", "maxLength": 1000}),
    _action("key", keys={"type": "array", "minItems": 1, "maxItems": 6,
                         "items": {"type": "string", "minLength": 1, "maxLength": 24}}),
    _action("scroll", pixels={"type": "integer", "minimum": -10_000, "maximum": 10_000}),
    _action("hscroll", pixels={"type": "integer", "minimum": -10_000, "maximum": 10_000}),
    _action("wait", time={"type": "number", "minimum": 0, "maximum": 60}),
    _action("terminate", status={"enum": ["success", "failure"]}),
    _action("answer", text={"type": "string", "maxLength": 1000}),
]

CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"const": FUNCTION}, "arguments": {"anyOf": ARGUMENT_SCHEMAS}},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}

_DESCRIPTION = (
    "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
    "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
    "You must click on desktop icons to start applications.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take "
    "successive screenshots to see the results of your actions.\n"
    f"* The screen's resolution is {RELATIVE_SCALE}x{RELATIVE_SCALE}.\n"
    "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a "
    "screenshot to determine the coordinates of the element before moving the cursor.\n"
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges.\n"
    "* Don't answer explicitly. Just terminate the task if finished with either success or failure."
)
_ACTIONS_DOC = (
    "The action to perform. The available actions are:\n"
    "* `key`: Performs key down presses on the arguments passed in order, then performs key releases in "
    "reverse order.\n"
    "* `type`: Type a string of text on the keyboard.\n"
    "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.\n"
    "* `left_click`: Click the left mouse button at a specified (x, y) pixel coordinate on the screen.\n"
    "* `left_click_drag`: Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.\n"
    "* `right_click`: Click the right mouse button at a specified (x, y) pixel coordinate on the screen.\n"
    "* `middle_click`: Click the middle mouse button at a specified (x, y) pixel coordinate on the screen.\n"
    "* `double_click`: Double-click the left mouse button at a specified (x, y) pixel coordinate on the screen.\n"
    "* `triple_click`: Triple-click the left mouse button at a specified (x, y) pixel coordinate on the screen.\n"
    "* `scroll`: Performs a scroll of the mouse scroll wheel.\n"
    "* `hscroll`: Performs a horizontal scroll.\n"
    "* `wait`: Wait specified seconds for the change to happen.\n"
    "* `terminate`: Terminate the current task and report its completion status.\n"
    "* `answer`: Answer a question."
)
#: The tool as the model is shown it (OpenAI's function format; the chat template renders it).
TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": FUNCTION,
    "description": _DESCRIPTION,
    "parameters": {
        "type": "object",
        "properties": {
            "action": {"description": _ACTIONS_DOC, "type": "string", "enum": [
                "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click", "middle_click",
                "double_click", "triple_click", "scroll", "hscroll", "wait", "terminate", "answer"]},
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {"description": "Required only by `action=type` and `action=answer`.", "type": "string"},
            "coordinate": {"description": "(x, y): The x (pixels from the left edge) and y (pixels from the top "
                                          "edge) coordinates to move the mouse to.", "type": "array"},
            "pixels": {"description": "The amount of scrolling to perform. Positive values scroll up, negative "
                                      "values scroll down. Required only by `action=scroll` and `action=hscroll`.",
                       "type": "number"},
            "time": {"description": "The seconds to wait. Required only by `action=wait`.", "type": "number"},
            "status": {"description": "The status of the task. Required only by `action=terminate`.",
                       "type": "string", "enum": ["success", "failure"]},
        },
        "required": ["action"],
    },
}}


class GuiAction(Task):
    name = "gui_action"
    summary = ("The next GUI action (click, type, key, scroll, drag, wait, done) for an instruction on a screenshot, "
               "given the steps so far (options.history); coordinates in pixels of the screenshot.")
    rules = InputRules(images=(1, 1), text_required=True)
    system_prompt = "You are a helpful assistant."
    defaults = {"max_tokens": 256, "temperature": 0.0}
    task_options = ("history",)

    def __init__(self, history: list[str] | None = None) -> None:
        self.history = history or []

    def configure(self, options: InferOptions, settings: Settings) -> Task:
        super().configure(options, settings)
        if not options.history:
            return self
        return GuiAction(bounded_history(options.history, max_steps=settings.limits.max_history_steps,
                                         max_chars=settings.limits.max_history_chars))

    def caller_texts(self) -> list[str]:
        return list(self.history)

    def schema(self) -> dict[str, Any]:
        return CALL_SCHEMA

    def tools(self) -> list[dict[str, Any]]:
        return [TOOL]

    def prefill(self) -> str:
        return TOOL_CALL_OPEN

    def messages(self, inp: TaskInput) -> list[Message]:
        progress = "; ".join(f"Step {i}: {step}" for i, step in enumerate(self.history, 1)) or "None"
        query = (f"The user query: {inp.text.strip()}\n"
                 f"Task progress (You have done the following operation on the current device): {progress}\n")
        return [Message("system", self.system_prompt),
                Message("user", [TextPart(query), ImagePart(inp.images[0])])]

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        call = read_call(text)
        size = inp.images[0].size
        return {"action": typed_action(call["arguments"], size), "call": call, "image_size": list(size)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {
            "history": "the steps taken so far, oldest first: strings, or earlier answers' `call` objects "
                       "(limits.max_history_steps, limits.max_history_chars)"}}


def bounded_history(history: list[str | dict[str, Any]], *, max_steps: int, max_chars: int) -> list[str]:
    """The history as the prompt shows it (objects as compact JSON), within its limits (4000)."""
    if len(history) > max_steps:
        raise RequestError(f"options.history has {len(history)} steps; this server accepts at most {max_steps}",
                           param="history")
    steps = []
    for step in history:
        if isinstance(step, str):
            steps.append(step)
            continue
        try:
            steps.append(json.dumps(step, ensure_ascii=False, separators=(", ", ": "), allow_nan=False))
        except (TypeError, ValueError, RecursionError) as err:
            raise RequestError(f"options.history holds a step that is not plain JSON: {err}", param="history") from None
    chars = sum(len(step) for step in steps)
    if chars > max_chars:
        raise RequestError(f"options.history has {chars} characters; this server accepts at most {max_chars}",
                           param="history")
    return steps


def read_call(text: str) -> dict[str, Any]:
    """The model's call as JSON: the text after the prefilled ``<tool_call>``, up to its closing tag."""
    body = text.split("</tool_call>", 1)[0].strip()
    call = json.loads(body)
    if not isinstance(call, dict) or call.get("name") != FUNCTION or not isinstance(call.get("arguments"), dict):
        raise ValueError(f"not a {FUNCTION} call")
    return {"name": FUNCTION, "arguments": call["arguments"]}


def typed_action(arguments: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """The cookbook's arguments as one typed action; points become pixels of an image of ``size``."""
    action = arguments["action"]
    if action in _CLICKS:
        button, clicks = _CLICKS[action]
        x, y = point_to_pixels(arguments["coordinate"], size)
        return {"type": "click", "button": button, "clicks": clicks, "x": x, "y": y}
    if action in ("mouse_move", "left_click_drag"):
        x, y = point_to_pixels(arguments["coordinate"], size)
        # A drag starts where the pointer is (the cookbook moves it there first) and ends at (x, y).
        return {"type": "move" if action == "mouse_move" else "drag", "x": x, "y": y}
    if action == "type":
        return {"type": "type", "text": arguments["text"]}
    if action == "key":
        return {"type": "key", "keys": list(arguments["keys"])}
    if action in ("scroll", "hscroll"):
        return {"type": "scroll", "axis": "vertical" if action == "scroll" else "horizontal",
                "amount": arguments["pixels"]}
    if action == "wait":
        return {"type": "wait", "seconds": arguments["time"]}
    if action == "terminate":
        return {"type": "done", "status": arguments["status"]}
    if action == "answer":
        return {"type": "done", "status": "success", "text": arguments["text"]}
    raise ValueError(f"unknown action {action!r}")
