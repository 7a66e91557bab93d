"""Bounds on a caller's JSON schema, checked in microseconds before any grammar is built.

A schema is a program: ``{"minItems": 10000000}`` asks for an answer of ten million items, and a
``$ref`` that points back at itself has no smallest instance at all. Before a schema reaches the
grammar compiler (or anything that walks it), :func:`check_schema` bounds its serialised size and
nesting depth, refuses ``$ref`` cycles and references that go nowhere, and computes a *lower
bound* on the tokens its smallest valid answer needs (every array item, required property and
enum value costs at least one token), so a schema that cannot fit ``max_tokens`` is refused with
4000 at once instead of costing seconds and gigabytes to find out.
"""

from __future__ import annotations

import json
from typing import Any

from vlserve.errors import RequestError

#: Saturation point of the token lower bound (it only has to exceed any real budget).
_HUGE = 10**12
#: No tokenizer token is longer than this many characters in practice, so a string of minLength
#: n costs at least n / 64 tokens.
_CHARS_PER_TOKEN = 64


def check_schema(schema: Any, *, max_bytes: int, max_depth: int, max_tokens: int | None = None) -> None:
    """Raise :class:`RequestError` (4000) if ``schema`` is too large, too deep, recursive, refers to
    a missing definition, or cannot fit ``max_tokens``."""
    if not isinstance(schema, dict):
        raise RequestError("a JSON schema must be an object")
    try:
        size = len(json.dumps(schema, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise RequestError(f"the JSON schema is not valid JSON: {err}") from None
    if size > max_bytes:
        raise RequestError(f"the JSON schema takes {size} bytes; this server accepts at most {max_bytes}")
    depth = _depth(schema, max_depth)
    if depth > max_depth:
        raise RequestError(f"the JSON schema nests deeper than {max_depth} levels")
    needed = _MinTokens(schema).of(schema, ())
    if max_tokens is not None and needed > max_tokens:
        shown = "more than a trillion" if needed >= _HUGE else str(needed)
        raise RequestError(f"the JSON schema's smallest valid answer needs at least {shown} tokens, more than "
                           f"max_tokens={max_tokens}")


def _depth(node: Any, limit: int) -> int:
    """Nesting depth of ``node``, iteratively (a hostile schema must not exhaust the stack)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


class _MinTokens:
    """A lower bound on the tokens of the smallest instance, following local ``$ref``s."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.memo: dict[str, int] = {}

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            raise RequestError(f"only local $ref (#/...) are supported, got {ref[:80]!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise RequestError(f"the JSON schema refers to {ref[:80]!r}, which it does not define")
            node = node[part]
        return node

    def of(self, schema: Any, refs: tuple[str, ...]) -> int:
        if schema is True or schema == {}:
            return 1
        if schema is False or not isinstance(schema, dict):
            return 1
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise RequestError("$ref must be a string")
            if ref in refs:
                raise RequestError("recursive JSON schemas ($ref cycles) are not supported")
            if ref not in self.memo:
                self.memo[ref] = self.of(self.resolve(ref), (*refs, ref))
            return self.memo[ref]
        if "const" in schema or "enum" in schema:
            return 1
        branches = [b for key in ("anyOf", "oneOf") for b in _list(schema.get(key))]
        if branches:
            return min(self.of(b, refs) for b in branches)
        parts = [self.of(b, refs) for b in _list(schema.get("allOf"))]
        own = self._own(schema, refs)
        return max([own, *parts])

    def _own(self, schema: dict[str, Any], refs: tuple[str, ...]) -> int:
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "null" in kinds or "boolean" in kinds or "number" in kinds or "integer" in kinds:
            return 1
        if kind == "string" or (kind is None and "minLength" in schema):
            return 1 + _count(schema.get("minLength", 0)) // _CHARS_PER_TOKEN
        if kind == "array" or (kind is None and ("items" in schema or "minItems" in schema)):
            items = schema.get("items", {})
            per_item = self.of(items, refs) if isinstance(items, dict) else 1
            prefix = sum(self.of(p, refs) for p in _list(schema.get("prefixItems")))
            return min(_HUGE, 1 + prefix + _count(schema.get("minItems", 0)) * per_item)
        props = schema.get("properties", {}) if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in _list(schema.get("required")) if isinstance(r, str)]
        total = 1 + max(len(required), _count(schema.get("minProperties", 0)))
        for name in required:
            total += self.of(props.get(name, {}), refs)
            if total >= _HUGE:
                return _HUGE
        return total


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(min(max(value, 0), _HUGE))
