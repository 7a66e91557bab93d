"""JSON schemas as the completer reads them: a small tree of nodes, and minimal documents.

:func:`build` turns a schema into :class:`Obj`/:class:`Arr`/:class:`Str`/:class:`Num`/:class:`Lit`
nodes and :class:`Union` of them (``anyOf``, ``oneOf``, type lists, ``enum``), resolving local
``$ref`` (recursion included) and merging ``allOf``. :class:`Minimal` gives each node's shortest
instance as llguidance would write it; :func:`number_suffix` the shortest way to finish a number.
Anything outside :data:`SUPPORTED` (and the ignored :data:`ANNOTATIONS`) raises :class:`Unsupported`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
    "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "maxProperties",
})
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "discriminator", "contentMediaType", "contentEncoding", "$anchor",
})
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")



class Unsupported(ValueError):
    """The schema uses something the completer cannot complete (the decoder then falls back)."""


# -- schema nodes ---------------------------------------------------------------------------------
class Obj:
    __slots__ = ("props", "index", "required", "additional", "max_props", "_rest")

    def __init__(self) -> None:
        self.props: list[tuple[bytes, Node]] = []  # (key as it appears between the quotes, value)
        self.index: dict[bytes, int] = {}
        self.required: frozenset[int] = frozenset()
        self.additional: Node | None = None  # None: no additional properties
        self.max_props: int | None = None
        self._rest: dict[tuple[int, bool], bytes | None] = {}


class Arr:
    __slots__ = ("prefix", "items", "min_items", "max_items")

    def __init__(self, prefix: list[Node], items: Node | None, min_items: int, max_items: int | None) -> None:
        self.prefix, self.items, self.min_items, self.max_items = prefix, items, min_items, max_items

    def item(self, i: int) -> Node | None:
        return self.prefix[i] if i < len(self.prefix) else self.items


class Str:
    __slots__ = ("min_len", "max_len")

    def __init__(self, min_len: int, max_len: int | None) -> None:
        self.min_len, self.max_len = min_len, max_len


class Num:
    __slots__ = ("lo", "hi", "lo_excl", "hi_excl", "integer", "_suffix")

    def __init__(self, lo: float, hi: float, lo_excl: bool, hi_excl: bool, integer: bool) -> None:
        self.lo, self.hi, self.lo_excl, self.hi_excl, self.integer = lo, hi, lo_excl, hi_excl, integer
        self._suffix: dict[bytes, bytes | None] = {}

    @property
    def ranged(self) -> bool:
        return self.lo > -math.inf or self.hi < math.inf


class Lit:
    """A fixed value (``const``, one ``enum`` option, ``true``/``false``/``null``): its exact bytes."""

    __slots__ = ("options",)

    def __init__(self, options: tuple[bytes, ...]) -> None:
        self.options = options


class Union:
    __slots__ = ("alts",)

    def __init__(self, alts: list[Node]) -> None:
        self.alts = alts


Node = Obj | Arr | Str | Num | Lit | Union


# -- building nodes from a schema ---------------------------------------------------------------------
class Builder:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.memo: dict[int, Node] = {}
        self._any: Union | None = None

    def any(self) -> Union:
        if self._any is None:
            self._any = Union([])
            obj = Obj()
            obj.additional = self._any
            self._any.alts.extend([obj, Arr([], self._any, 0, None), Str(0, None), Num(-math.inf, math.inf,
                                   False, False, False), Lit((b"true", b"false", b"null"))])
        return self._any

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            raise Unsupported(f"$ref {ref!r} (only local references)")
        node = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise Unsupported(f"$ref {ref!r} does not resolve")
            node = node[part]
        return node

    def build(self, schema: Any) -> Node | None:
        """The node for ``schema``; None for ``false`` (nothing allowed)."""
        if schema is True or schema == {}:
            return self.any()
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        key = id(schema)
        if key in self.memo:
            return self.memo[key]
        unknown = set(schema) - SUPPORTED - ANNOTATIONS
        if unknown:
            raise Unsupported(f"keyword {sorted(unknown)[0]!r}")
        if "$ref" in schema:
            target = self.resolve(schema["$ref"])
            if set(schema) - {"$ref", "$defs", "definitions"} - ANNOTATIONS:
                raise Unsupported("$ref beside other keywords")
            placeholder = Union([])
            self.memo[key] = placeholder  # a recursive reference sees the placeholder, filled below
            inner = self.build(target)
            if inner is not None:
                placeholder.alts.append(inner)
            return placeholder
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                while isinstance(part, dict) and "$ref" in part:
                    part = self.resolve(part["$ref"])
                if not isinstance(part, dict):
                    raise Unsupported("allOf with a boolean schema")
                for k, v in part.items():
                    if k == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required":
                        merged["required"] = [*merged.get("required", []), *v]
                    else:
                        merged[k] = v
            node = self.build(merged)
            if node is not None:
                self.memo[key] = node
            return node
        for word in ("anyOf", "oneOf"):
            if word in schema:
                siblings = {k: v for k, v in schema.items() if k not in (word, "$defs", "definitions")
                            and k not in ANNOTATIONS}
                union = Union([])
                self.memo[key] = union
                for alt in schema[word]:
                    if siblings and isinstance(alt, dict):
                        alt = {"allOf": [siblings, alt]}
                    built = self.build(alt)
                    if built is not None:
                        union.alts.append(built)
                return union
        if "const" in schema:
            return self._literal(schema["const"])
        if "enum" in schema:
            alts = [self._literal(v) for v in schema["enum"]]
            return alts[0] if len(alts) == 1 else Union(alts)
        kinds = schema.get("type")
        if kinds is None:
            if "properties" in schema or "additionalProperties" in schema or "required" in schema:
                kinds = "object"
            elif "items" in schema or "prefixItems" in schema:
                kinds = "array"
            else:
                return self.any()
        if isinstance(kinds, list):
            union = Union([])
            self.memo[key] = union
            union.alts.extend(self._typed(schema, k) for k in kinds)
            return union
        node = self._typed(schema, kinds)
        self.memo[key] = node
        return node

    def _typed(self, schema: dict[str, Any], kind: str) -> Node:
        if kind == "object":
            obj = Obj()
            self.memo[id(schema)] = obj
            props = schema.get("properties", {})
            required = schema.get("required", [])
            missing = [name for name in required if name not in props]
            if missing:
                raise Unsupported(f"required property {missing[0]!r} not in properties")
            for i, (name, sub) in enumerate(props.items()):
                built = self.build(sub)
                if built is None:
                    if name in required:
                        raise Unsupported(f"required property {name!r} allows no value")
                    built = Union([])  # a property that can never be written
                key = json.dumps(name, ensure_ascii=False)[1:-1].encode()
                obj.props.append((key, built))
                obj.index[key] = i
            obj.required = frozenset(list(props).index(name) for name in required)
            obj.additional = self.build(schema.get("additionalProperties", True))
            obj.max_props = schema.get("maxProperties")
            return obj
        if kind == "array":
            prefix = [self._must(s) for s in schema.get("prefixItems", [])]
            items = self.build(schema.get("items", True))
            return Arr(prefix, items, schema.get("minItems", 0), schema.get("maxItems"))
        if kind == "string":
            return Str(schema.get("minLength", 0), schema.get("maxLength"))
        if kind in ("number", "integer"):
            lo, lo_excl = float(schema.get("minimum", -math.inf)), False
            hi, hi_excl = float(schema.get("maximum", math.inf)), False
            for word in ("exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(schema.get(word), bool):
                    raise Unsupported(f"boolean {word} (draft 4)")
            if "exclusiveMinimum" in schema and schema["exclusiveMinimum"] >= lo:
                lo, lo_excl = float(schema["exclusiveMinimum"]), True
            if "exclusiveMaximum" in schema and schema["exclusiveMaximum"] <= hi:
                hi, hi_excl = float(schema["exclusiveMaximum"]), True
            return Num(lo, hi, lo_excl, hi_excl, kind == "integer")
        if kind == "boolean":
            return Lit((b"true", b"false"))
        if kind == "null":
            return Lit((b"null",))
        raise Unsupported(f"type {kind!r}")

    def _must(self, schema: Any) -> Node:
        node = self.build(schema)
        if node is None:
            raise Unsupported("an item schema that allows nothing")
        return node

    @staticmethod
    def _literal(value: Any) -> Node:
        if isinstance(value, bool) or value is None or not isinstance(value, int | float):
            return Lit((json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),))
        return Num(float(value), float(value), False, False, float(value).is_integer())


def flatten(node: Node | None, seen: set[int] | None = None) -> list[Node]:
    """The non-union nodes a value of ``node`` may take."""
    if node is None:
        return []
    if not isinstance(node, Union):
        return [node]
    seen = seen if seen is not None else set()
    if id(node) in seen:
        return []
    seen.add(id(node))
    out: list[Node] = []
    for alt in node.alts:
        for n in flatten(alt, seen):
            if all(n is not m for m in out):
                out.append(n)
    return out


# -- numbers ------------------------------------------------------------------------------------------
def number_ok(node: Num, text: bytes) -> bool:
    """``text`` is a complete JSON number that ``node`` accepts (as llguidance reads it)."""
    try:
        s = text.decode()
    except UnicodeDecodeError:
        return False
    if not s or s[-1] not in "0123456789":
        return False
    body = s[1:] if s.startswith("-") else s
    if not body or not body[0].isdigit() or (len(body) > 1 and body[0] == "0" and body[1].isdigit()):
        return False
    if node.integer and any(c in body for c in ".eE"):
        return False
    if not node.ranged:
        return _NUMBER.fullmatch(s) is not None
    if any(c in body for c in "eE"):
        return False  # llguidance writes ranged numbers without exponents
    try:
        value = float(s)
    except ValueError:
        return False
    if not math.isfinite(value) or (value == 0 and s.startswith("-") and not node.integer):
        return False  # nor negative zero in a ranged non-integer
    if value < node.lo or (node.lo_excl and value == node.lo):
        return False
    return not (value > node.hi or (node.hi_excl and value == node.hi))


_SUFFIX_ALPHABET = [bytes([c]) for c in b"0123456789.-e+"]


def number_suffix(node: Num, text: bytes) -> bytes | None:
    """The shortest bytes that make ``text`` (a number so far) a complete number ``node`` accepts;
    None when we find none (then ``text`` cannot start such a number)."""
    cached = node._suffix.get(text, False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    found: bytes | None = None
    if number_ok(node, text):
        found = b""
    else:
        frontier = [b""]
        for _ in range(3):
            frontier = [s + c for s in frontier for c in _SUFFIX_ALPHABET]
            found = next((s for s in frontier if number_ok(node, text + s)), None)
            if found is not None:
                break
        if found is None:  # far from the range: pad the integer part, maybe add a fraction
            for k in range(4, 24):
                for s in (b"0" * k, b"1" + b"0" * (k - 1), b"9" * k, b"0" * (k - 2) + b".1",
                          b"." + b"0" * (k - 2) + b"1"):
                    if number_ok(node, text + s):
                        found = s
                        break
                if found is not None:
                    break
    if len(node._suffix) < 4096:
        node._suffix[text] = found
    return found


def shortest_number(node: Num) -> bytes | None:
    return number_suffix(node, b"")


# -- minimal documents ------------------------------------------------------------------------------
class Minimal:
    """Shortest instance bytes of each node (cached; a cycle with no way out is None)."""

    def __init__(self) -> None:
        self.cache: dict[int, bytes | None] = {}
        self.busy: set[int] = set()

    def of(self, node: Node | None) -> bytes | None:
        if node is None:
            return None
        key = id(node)
        if key in self.cache:
            return self.cache[key]
        if key in self.busy:
            return None
        self.busy.add(key)
        try:
            out = self._compute(node)
        finally:
            self.busy.discard(key)
        self.cache[key] = out
        return out

    def _compute(self, node: Node) -> bytes | None:
        if isinstance(node, Union):
            return shortest(self.of(alt) for alt in node.alts)
        if isinstance(node, Lit):
            return min(node.options, key=len)
        if isinstance(node, Num):
            return shortest_number(node)
        if isinstance(node, Str):
            return b'"' + b"a" * node.min_len + b'"'
        if isinstance(node, Arr):
            items = [self.of(node.item(i)) for i in range(node.min_items)]
            if any(i is None for i in items):
                return None
            return b"[" + b",".join(items) + b"]"  # type: ignore[arg-type]
        rest = self.rest(node, -1, first=True)
        return None if rest is None else b"{" + rest

    def rest(self, node: Obj, pos: int, *, first: bool) -> bytes | None:
        """The required properties after declared index ``pos``, then ``}``."""
        key = (pos, first)
        if key in node._rest:
            return node._rest[key]
        parts = []
        for i in sorted(r for r in node.required if r > pos):
            name, sub = node.props[i]
            value = self.of(sub)
            if value is None:
                node._rest[key] = None
                return None
            parts.append(b'"' + name + b'":' + value)
        out = (b"" if first or not parts else b",") + b",".join(parts) + b"}"
        node._rest[key] = out
        return out


def shortest(options: Iterable[bytes | None]) -> bytes | None:
    best: bytes | None = None
    for option in options:
        if option is not None and (best is None or len(option) < len(best)):
            best = option
    return best


def build(schema: dict[str, Any]) -> Node:
    """The node tree of ``schema`` (raises :class:`Unsupported`)."""
    root = Builder(schema).build(schema)
    if root is None:
        raise Unsupported("the schema allows nothing")
    return root
