"""gui_action: the cookbook's computer_use calls as typed actions in pixels of the screenshot, the
forced-call schema, and the bounds on the history."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from PIL import Image

from vlserve.config import Settings
from vlserve.errors import RequestError
from vlserve.schemas import InferOptions
from vlserve.tasks import get_task
from vlserve.tasks.base import TaskInput
from vlserve.tasks.gui_action import CALL_SCHEMA, TOOL, GuiAction, bounded_history, typed_action

INP = TaskInput(text="Open the settings", images=[Image.new("RGB", (640, 360))])


def call(**arguments: Any) -> str:
    return json.dumps({"name": "computer_use", "arguments": arguments})


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"action": "left_click", "coordinate": [500, 250]},
     {"type": "click", "button": "left", "clicks": 1, "x": 320, "y": 90}),
    ({"action": "right_click", "coordinate": [0, 0]},
     {"type": "click", "button": "right", "clicks": 1, "x": 0, "y": 0}),
    ({"action": "double_click", "coordinate": [1000, 1000]},  # the last pixel, not one past it
     {"type": "click", "button": "left", "clicks": 2, "x": 639, "y": 359}),
    ({"action": "triple_click", "coordinate": [123, 456]},
     {"type": "click", "button": "left", "clicks": 3, "x": 79, "y": 164}),
    ({"action": "middle_click", "coordinate": [10, 10]},
     {"type": "click", "button": "middle", "clicks": 1, "x": 6, "y": 4}),
    ({"action": "mouse_move", "coordinate": [250, 750]}, {"type": "move", "x": 160, "y": 270}),
    ({"action": "left_click_drag", "coordinate": [999, 1]}, {"type": "drag", "x": 639, "y": 0}),
    ({"action": "type", "text": "hello"}, {"type": "type", "text": "hello"}),
    ({"action": "key", "keys": ["ctrl", "s"]}, {"type": "key", "keys": ["ctrl", "s"]}),
    ({"action": "scroll", "pixels": -300}, {"type": "scroll", "axis": "vertical", "amount": -300}),
    ({"action": "hscroll", "pixels": 40}, {"type": "scroll", "axis": "horizontal", "amount": 40}),
    ({"action": "wait", "time": 2.5}, {"type": "wait", "seconds": 2.5}),
    ({"action": "terminate", "status": "failure"}, {"type": "done", "status": "failure"}),
    ({"action": "answer", "text": "42"}, {"type": "done", "status": "success", "text": "42"}),
])
def test_every_cookbook_action_becomes_a_typed_action(arguments: dict[str, Any], expected: dict[str, Any]) -> None:
    jsonschema.validate({"name": "computer_use", "arguments": arguments}, CALL_SCHEMA)
    answer = GuiAction().answer(call(**arguments), INP)
    assert answer == {"action": expected, "call": {"name": "computer_use", "arguments": arguments},
                      "image_size": [640, 360]}
    assert typed_action(arguments, (640, 360)) == expected


def test_the_schema_allows_each_action_only_its_own_arguments() -> None:
    for wrong in ({"action": "left_click"}, {"action": "left_click", "coordinate": [5, 5], "text": "x"},
                  {"action": "type", "coordinate": [5, 5]}, {"action": "left_click", "coordinate": [1001, 5]},
                  {"action": "fly"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"name": "computer_use", "arguments": wrong}, CALL_SCHEMA)
    # Every action the tool shown to the model names has a schema branch.
    enum = TOOL["function"]["parameters"]["properties"]["action"]["enum"]
    branches = {b["properties"]["action"]["const"] for b in CALL_SCHEMA["properties"]["arguments"]["anyOf"]}
    assert set(enum) == branches


def test_a_closing_tag_after_the_call_is_tolerated() -> None:
    answer = GuiAction().answer(call(action="wait", time=1) + "\n</tool_call>", INP)
    assert answer["action"] == {"type": "wait", "seconds": 1}


def test_the_prompt_is_the_cookbooks() -> None:
    task = GuiAction(["clicked Wi-Fi", '{"name": "computer_use"}'])
    system, user = task.messages(INP)
    assert system.content == "You are a helpful assistant." and task.tools() == [TOOL]
    assert task.prefill() == "<tool_call>\n"
    text = user.content[0].text  # type: ignore[union-attr]
    assert text.startswith("The user query: Open the settings\n")
    assert 'Step 1: clicked Wi-Fi; Step 2: {"name": "computer_use"}' in text
    assert "The screen's resolution is 1000x1000." in TOOL["function"]["description"]


def test_history_is_bounded_and_counted_as_caller_text() -> None:
    settings = Settings.model_validate({})
    task = get_task("gui_action").configure(
        InferOptions.model_validate(
            {"history": ["opened app", {"name": "computer_use", "arguments": {"action": "wait", "time": 1}}]}),
        settings)
    assert task.caller_texts() == ["opened app",
                                   '{"name": "computer_use", "arguments": {"action": "wait", "time": 1}}']
    with pytest.raises(RequestError, match="at most 2"):
        bounded_history(["a", "b", "c"], max_steps=2, max_chars=100)
    with pytest.raises(RequestError, match="101 characters"):
        bounded_history(["a" * 60, "b" * 41], max_steps=5, max_chars=100)
    with pytest.raises(RequestError, match="history is not an option of task 'extract'"):
        options = InferOptions.model_validate({"history": ["x"], "json_schema": {"type": "object"}})
        get_task("extract").configure(options, settings)
