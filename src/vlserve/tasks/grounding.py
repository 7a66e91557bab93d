from __future__ import annotations

import json
from typing import Any

from vlserve.tasks.base import InputRules, Task, TaskInput

# Qwen3-VL answers grounding queries with boxes in 0–1000 coordinates relative to the image.
RELATIVE_SCALE = 1000

GROUNDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "objects": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "maxLength": 64},
                    "bbox_2d": {
                        "type": "array",
                        "minItems": 4,
                        "maxItems": 4,
                        "items": {"type": "integer", "minimum": 0, "maximum": RELATIVE_SCALE},
                    },
                },
                "required": ["label", "bbox_2d"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["objects"],
    "additionalProperties": False,
}


class Grounding(Task):
    name = "grounding"
    summary = "Locate the objects named in text; boxes in pixel coordinates of the original image."
    rules = InputRules(images=(1, 1), text_required=True)
    system_prompt = (
        "You are a visual grounding engine. Find every instance of what the user asks for and "
        "return one box per instance as bbox_2d [x1, y1, x2, y2] in coordinates from 0 to 1000 "
        "relative to the image width and height, with a short label, as JSON."
    )
    defaults = {"max_tokens": 512, "temperature": 0.0}

    def schema(self) -> dict[str, Any]:
        return GROUNDING_SCHEMA

    def instruction(self, inp: TaskInput) -> str:
        return f"Locate: {inp.text.strip()}. Report bbox_2d coordinates as JSON."

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        width, height = inp.images[0].size
        objects = []
        for obj in json.loads(text)["objects"]:
            x1, y1, x2, y2 = obj["bbox_2d"]
            # Models may swap corners; a box is the same box either way round.
            x1, x2 = sorted((x1, x2))
            y1, y2 = sorted((y1, y2))
            objects.append({
                "label": obj["label"],
                "bbox_2d": obj["bbox_2d"],
                "box": [
                    round(x1 * width / RELATIVE_SCALE), round(y1 * height / RELATIVE_SCALE),
                    round(x2 * width / RELATIVE_SCALE), round(y2 * height / RELATIVE_SCALE),
                ],
            })
        return {"objects": objects, "image_size": [width, height]}
