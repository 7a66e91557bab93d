"""extract: the caller's schema bounded and checked before any work; the answer validated with
jsonschema and honest about it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image

from vlserve.config import Settings
from vlserve.errors import RequestError
from vlserve.schemas import InferOptions
from vlserve.tasks import get_task
from vlserve.tasks.base import TaskInput
from vlserve.tasks.extract import Extract, validation_errors

SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "name": {"type": "string"}, "total": {"type": "number", "minimum": 0},
    "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}}, "required": ["name", "total"]}
INP = TaskInput(images=[Image.new("RGB", (64, 64))])


def configure(schema: Any, **limits: Any) -> Any:
    settings = Settings.model_validate({"limits": limits}) if limits else Settings.model_validate({})
    return get_task("extract").configure(InferOptions.model_validate({"json_schema": schema}), settings)


def test_a_valid_answer_is_returned_as_data() -> None:
    task = configure(SCHEMA)
    assert task.schema() == SCHEMA and task.caller_schema is True
    answer = task.answer(json.dumps({"name": "ACME", "total": 12.5, "date": "2026-11-30"}), INP)
    assert answer == {"data": {"name": "ACME", "total": 12.5, "date": "2026-11-30"}, "valid": True, "errors": []}


def test_an_answer_the_decoder_could_not_hold_to_is_flagged() -> None:
    # `pattern` is beyond the output completer: such an answer can break the schema, and says so.
    answer = configure(SCHEMA).answer(json.dumps({"name": "ACME", "total": -1, "date": "30.11.2026"}), INP)
    assert answer["valid"] is False
    assert {e["path"] for e in answer["errors"]} == {"/total", "/date"}


def test_the_schema_is_shown_to_the_model() -> None:
    task = configure(SCHEMA)
    assert json.dumps(SCHEMA, separators=(",", ":")) in task.instruction(TaskInput(text="Read the receipt"))


@pytest.mark.parametrize(("schema", "limits", "message"), [
    (None, {}, "needs the JSON Schema"),
    ({"type": "strin"}, {}, "not a valid JSON Schema"),
    ({"type": "object", "required": "name"}, {}, "not a valid JSON Schema at required"),
    ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, {}, "own definitions"),
    ({"properties": {"a": {"$ref": "other.json#/x"}}}, {}, "own definitions"),
    ({"$defs": {"x": {"$ref": "#/$defs/x"}}, "$ref": "#/$defs/x"}, {}, "recursive"),
    ({"type": "object", "description": "d" * 200}, {"max_schema_bytes": 100}, "bytes"),
    ({"type": "array", "items": {"type": "array", "items": {"type": "array"}}}, {"max_schema_depth": 2}, "deeper"),
])
def test_bad_schemas_are_refused_before_any_work(schema: Any, limits: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        configure(schema, **limits)


def test_the_shared_task_holds_no_schema() -> None:
    shared = get_task("extract")
    assert isinstance(shared, Extract) and shared.schema() is None
    configure(SCHEMA)
    assert shared.schema() is None  # each request configured its own copy


def test_a_backtracking_pattern_cannot_hold_the_server() -> None:
    # Exponential for a backtracking engine (Python's re would take days on this string); the
    # schema's patterns share one deadline, after which the answer is reported, not checked further.
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^(a|aa)+$"}}}
    errors = validation_errors(schema, {"id": "a" * 40 + "b"}, pattern_seconds=0.05)
    assert errors == [{"path": "/id", "message": "checking the pattern '^(a|aa)+$' took too long"}]
    assert validation_errors(schema, {"id": "aaa"}, pattern_seconds=0.05) == []
    assert validation_errors(schema, {"id": "ab"})[0]["message"] == "'ab' does not match '^(a|aa)+$'"


def test_pattern_properties_are_refused() -> None:
    with pytest.raises(RequestError, match="patternProperties is not supported"):
        configure({"type": "object", "patternProperties": {"^(a+)+$": {"type": "string"}}})


def test_an_answer_nested_without_end_is_reported_not_parsed() -> None:
    task = configure({"type": "array"})  # any items: the model may nest arrays as deep as it likes
    deep = task.answer("[" * 5000 + "]" * 5000, INP)
    assert deep["data"] is None and deep["valid"] is False and "deeper than 64" in deep["errors"][0]["message"]
    fine = task.answer(json.dumps([["[not nesting]", {"k": "}}}"}]]), INP)
    assert fine["valid"] is True and fine["data"] == [["[not nesting]", {"k": "}}}"}]]
