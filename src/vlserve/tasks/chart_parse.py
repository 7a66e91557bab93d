from __future__ import annotations

import json
from typing import Any

from vlserve.tasks.base import InputRules, Task, TaskInput

_LABEL = {"type": "string", "maxLength": 80}
# Bounded, so a number always fits a float (an unbounded one could be 1e999 and serialise as null).
_VALUE = {"type": "number", "minimum": -1e15, "maximum": 1e15}

CHART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": _LABEL,
        "chart_type": {"enum": ["bar", "line", "pie", "scatter", "area", "table", "other"]},
        "x_axis": {
            "type": "object",
            "properties": {"label": _LABEL, "unit": {"type": "string", "maxLength": 20}},
            "required": ["label", "unit"],
            "additionalProperties": False,
        },
        "y_axis": {
            "type": "object",
            "properties": {"label": _LABEL, "unit": {"type": "string", "maxLength": 20}},
            "required": ["label", "unit"],
            "additionalProperties": False,
        },
        "series": {
            "type": "array",
            "maxItems": 8,
            "items": {
                "type": "object",
                "properties": {
                    "name": _LABEL,
                    "points": {
                        "type": "array",
                        "maxItems": 24,
                        "items": {
                            "type": "object",
                            "properties": {"x": {"type": "string", "maxLength": 40}, "y": _VALUE},
                            "required": ["x", "y"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["name", "points"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "chart_type", "x_axis", "y_axis", "series"],
    "additionalProperties": False,
}


class ChartParse(Task):
    name = "chart_parse"
    summary = "Extract a chart's title, axes and data series as JSON (schema-constrained)."
    rules = InputRules(images=(1, 1))
    system_prompt = (
        "You are a chart data extraction engine. Read the chart in the image and return its title, "
        "chart type, axis labels and units, and every data series with its values, as JSON that "
        "follows the given schema. Read values from labels where printed, else estimate them from "
        "the axes."
    )
    default_instruction = "Extract the chart data as JSON."
    defaults = {"max_tokens": 1024, "temperature": 0.0}

    def schema(self) -> dict[str, Any]:
        return CHART_SCHEMA

    def answer(self, text: str, inp: TaskInput) -> Any:
        return json.loads(text)
