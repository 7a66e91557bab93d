"""JSON schemas the structured-output tests decode against: the tasks' own and user-style ones."""

from __future__ import annotations

from typing import Any

from vlserve.recon3d import spec_json_schema
from vlserve.tasks.chart_parse import CHART_SCHEMA
from vlserve.tasks.grounding import GROUNDING_SCHEMA

TASK_SCHEMAS: dict[str, dict[str, Any]] = {
    "chart_parse": CHART_SCHEMA,
    "grounding": GROUNDING_SCHEMA,
    "multiview_3d": spec_json_schema(compact=True),
}

USER_SCHEMAS: dict[str, dict[str, Any]] = {
    # nested objects, arrays with minItems, enums mixing types, anyOf, $ref, ranges
    "nested": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "minItems": 2, "maxItems": 5, "items": {
                "type": "object",
                "properties": {"kind": {"enum": ["x", "yy", 3, None]},
                               "value": {"anyOf": [{"type": "integer", "minimum": 5, "maximum": 900},
                                                   {"type": "string", "minLength": 3}]}},
                "required": ["value"]}},
            "flag": {"$ref": "#/$defs/Flag"},
        },
        "required": ["items", "flag"],
        "$defs": {"Flag": {"type": ["boolean", "null", "number"], "exclusiveMinimum": 0}},
    },
    # a recursive $ref, an integer far from zero
    "tree": {"type": "object",
             "properties": {"id": {"type": "integer", "minimum": 100000, "maximum": 100010},
                            "children": {"type": "array", "items": {"$ref": "#"}, "maxItems": 3}},
             "required": ["id"]},
    # allOf, string lengths, an object const
    "merged": {"allOf": [{"type": "object", "properties": {"code": {"type": "string", "minLength": 4, "maxLength": 6}},
                          "required": ["code"]},
                         {"properties": {"shape": {"const": {"q": [1, 2]}}}, "required": ["shape"]}]},
    # a tagged union whose tags share a prefix; additionalProperties with maxProperties
    "tagged": {"type": "object", "properties": {
        "event": {"oneOf": [
            {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
             "required": ["kind", "x"], "additionalProperties": False},
            {"type": "object", "properties": {"kind": {"const": "ab"}, "y": {"type": "string"}},
             "required": ["kind"], "additionalProperties": False}]},
        "scores": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                   "maxProperties": 2}},
        "required": ["event", "scores"]},
    # free-form values and prefixItems
    "loose": {"type": "object", "properties": {
        "anything": {}, "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "c"}],
                                 "items": {"type": "number", "minimum": -2.5, "maximum": -1.25}, "minItems": 3}},
        "required": ["anything", "pair"]},
}

ALL_SCHEMAS = {**TASK_SCHEMAS, **USER_SCHEMAS}
