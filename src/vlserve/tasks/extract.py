"""extract: information from images or documents (forms, invoices, labels) as JSON valid against
a schema the caller supplies in ``options.json_schema``.

The schema is the caller's input, so it is bounded like one before anything is fetched: its size
and depth (``limits.max_schema_bytes``, ``limits.max_schema_depth``), ``$ref`` cycles and
references that leave the document, the least ``max_tokens`` its smallest answer needs
(:func:`~vlserve.runtime.schema_limits.check_schema`), and that it is a valid JSON Schema at all
(checked by ``jsonschema`` against its meta-schema). Decoding is constrained to it; the answer is
validated against it once more with ``jsonschema`` and says whether it passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from vlserve.config import Settings
from vlserve.errors import RequestError
from vlserve.runtime.schema_limits import check_schema
from vlserve.schemas import InferOptions
from vlserve.tasks.base import InputRules, Task, TaskInput

MAX_REPORTED_ERRORS = 10
#: Time all of a schema's ``pattern`` checks of one answer may take together.
PATTERN_SECONDS = 1.0
#: Deepest answer read (a schema's own depth is bounded by limits.max_schema_depth, at most this).
MAX_ANSWER_DEPTH = 64


class Extract(Task):
    name = "extract"
    summary = ("Extract information from images or PDFs (forms, invoices, labels) as JSON valid against the "
               "caller's JSON Schema (options.json_schema, bounded in size and depth).")
    rules = InputRules(images=(0, 16), documents=(0, 2))
    system_prompt = (
        "You are an information extraction engine. Read the images and document pages carefully, including "
        "small print, tables, stamps and handwriting, and fill in the JSON object the schema describes with "
        "what they show. Copy values exactly as written (numbers without thousands separators, dates as "
        "printed unless the schema says otherwise). When a value is not shown, use null if the schema allows "
        "it, else an empty string or 0. Output only the JSON."
    )
    default_instruction = "Extract the information as JSON following the schema."
    defaults = {"max_tokens": 1024, "temperature": 0.0}
    caller_schema = True  # the service bounds schema() like any input (runtime.schema_limits)
    task_options = ("json_schema",)

    def __init__(self, json_schema: dict[str, Any] | None = None) -> None:
        self.json_schema = json_schema

    def configure(self, options: InferOptions, settings: Settings) -> Task:
        super().configure(options, settings)
        schema = options.json_schema
        if schema is None:
            raise RequestError("task 'extract' needs the JSON Schema of the answer in options.json_schema",
                               param="json_schema")
        lim = settings.limits
        check_schema(schema, max_bytes=lim.max_schema_bytes, max_depth=lim.max_schema_depth)  # before walking it
        check_valid_schema(schema)
        return Extract(schema)

    def schema(self) -> dict[str, Any] | None:
        return self.json_schema

    def instruction(self, inp: TaskInput) -> str:
        request = inp.text.strip() or self.default_instruction
        schema = json.dumps(self.json_schema, ensure_ascii=False, separators=(",", ":"))
        return f"{request}\nJSON Schema of the answer:\n{schema}"

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        # A permissive schema ({} or an object without properties) lets the model nest without end;
        # such an answer is reported, not parsed or walked by recursive code (a RecursionError: a 500).
        if _nesting(text) > MAX_ANSWER_DEPTH:
            return {"data": None, "valid": False, "errors": [
                {"path": "/", "message": f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels; give the schema "
                                         "explicit properties and items"}]}
        data = json.loads(text)
        errors = validation_errors(self.json_schema or {}, data)
        return {"data": data, "valid": not errors, "errors": errors}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "structured": True, "options": {
            "json_schema": "required: the JSON Schema the answer is valid against (limits.max_schema_bytes, "
                           "limits.max_schema_depth; only local $ref)"}}


def check_valid_schema(schema: dict[str, Any]) -> None:
    """Refuse (4000) a schema that is not a JSON Schema, that refers outside itself, or whose
    regular expressions would be run where no time limit can reach them."""
    from jsonschema import exceptions, validators

    for key, value in _keywords(schema):
        if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str) and not value.startswith("#"):
            raise RequestError(f"the JSON schema may refer only to its own definitions ($ref \"#/...\"), not "
                               f"{value[:80]!r}", param="json_schema")
        if key == "patternProperties":
            # jsonschema matches these with Python's backtracking `re` (an expression such as
            # "(a+)+b" takes exponential time on the model's keys); `pattern` is checked under a deadline.
            raise RequestError("patternProperties is not supported in options.json_schema; name the properties, "
                               "or use additionalProperties", param="json_schema")
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise RequestError(f"options.json_schema is not a valid JSON Schema at {where}: {err.message[:200]}",
                           param="json_schema") from None


def validation_errors(schema: dict[str, Any], data: Any, *,
                      pattern_seconds: float = PATTERN_SECONDS) -> list[dict[str, str]]:
    """Where ``data`` breaks ``schema`` (at most :data:`MAX_REPORTED_ERRORS`), as ``{path, message}``.
    The schema's ``pattern`` expressions are caller-written: together they get ``pattern_seconds``."""
    from jsonschema import validators
    from referencing import Registry

    base = validators.validator_for(schema, default=validators.Draft202012Validator)
    cls = validators.extend(base, {"pattern": _DeadlinePattern(time.monotonic() + pattern_seconds)})
    # An empty registry: references resolve inside the schema only, nothing is ever retrieved.
    validator = cls(schema, registry=Registry())
    out = []
    for error in validator.iter_errors(data):
        out.append({"path": "/" + "/".join(str(p) for p in error.absolute_path), "message": error.message[:300]})
        if len(out) >= MAX_REPORTED_ERRORS:
            break
    return out


def _nesting(text: str) -> int:
    """How deep the JSON ``text`` nests its arrays and objects (brackets inside strings skipped)."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _DeadlinePattern:
    """jsonschema's ``pattern`` keyword with the ``regex`` module, under one deadline for all strings
    (Python's ``re`` cannot be interrupted, and a caller's expression may backtrack for ever)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
        import regex
        from jsonschema import ValidationError

        if not validator.is_type(instance, "string"):
            return
        try:
            found = regex.search(pattern, instance, timeout=max(0.001, self.deadline - time.monotonic()))
        except TimeoutError:
            yield ValidationError(f"checking the pattern {pattern[:60]!r} took too long")
            return
        if found is None:
            yield ValidationError(f"{instance[:60]!r} does not match {pattern[:60]!r}")


def _keywords(node: Any) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of every object in the schema, iteratively (its depth is bounded)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield str(key), value
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
