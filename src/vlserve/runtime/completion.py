"""Shortest valid completions of a partial JSON document under a JSON schema.

Constrained decoding (:mod:`vlserve.runtime.constrained`) guarantees that every generated token
keeps the output a *prefix* of some valid document. To also guarantee that the document *ends*
within ``max_tokens``, the decoder must know, at every step, how long the shortest valid ending
of what it has generated would be. :class:`Completer` answers that.

It is an incremental parser fed the bytes of each generated token. Its state is a set of stacks
(one per way the prefix can still be read: ``anyOf`` branches, type unions, enum options), each a
tuple of immutable frames (an object with the keys seen so far and where it is inside a key, a
value or between members; an array with its item count; a string with its length and escape
state; a number or literal so far). Feeding bytes builds new frames and shares the unchanged
ones, so the state before a token stays valid: the decoder can look one token ahead and go back.

From any state, :meth:`Completer.completion` builds the shortest ending: finish the scalar in
progress (close a string, padded to ``minLength``; complete a partial enum/const value or property
name to its shortest matching option; make a partial number valid and within its range), then,
from the innermost container outwards, add the missing required properties with minimal values,
pad arrays to ``minItems`` and close them.

The output follows llguidance's JSON grammar as we compile it (``whitespace_flexible: False``):
no whitespace, ``,`` and ``:`` as separators, declared properties in schema order (required ones
never skipped, optional ones skippable), additional properties after the declared ones, no
exponents in numbers that have a range, ``\\u`` escapes only for control characters.
Every completion the decoder relies on is checked against llguidance before it is used.

Schemas using keywords outside :data:`SUPPORTED` (``pattern``, ``format``, ``multipleOf``, ``not``,
``if``/``then``, ``minProperties``, ...) raise :class:`Unsupported`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
    "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "maxProperties",
})
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "discriminator", "contentMediaType", "contentEncoding", "$anchor",
})
MAX_STACKS = 512  # readings of one prefix kept apart; past this the schema is too ambiguous for us
NUMBER_BYTES = frozenset(b"0123456789.eE+-")
HEX = frozenset(b"0123456789abcdefABCDEF")
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


# -- parser frames (immutable; feeding bytes makes new ones) ------------------------------------------
class Expect(NamedTuple):
    """A value is due; ``cands`` are the node kinds it may still take."""

    cands: tuple[Node, ...]


class ObjF(NamedTuple):
    node: Obj
    state: str  # "open" after {, "comma" after ",", "key" inside a key, "colon", "value", "next"
    pos: int = -1  # index of the last declared property written
    count: int = 0  # properties written (or being written)
    key: bytes = b""  # the key so far (state "key")
    esc: int = 0  # escape state inside the key (see _string_byte)
    extra: bool = False  # writing additional properties (no declared one may follow)


class ArrF(NamedTuple):
    node: Arr
    state: str  # "open" after [, "comma" after ",", "value", "next"
    count: int = 0  # items finished


class StrF(NamedTuple):
    node: Str
    count: int = 0  # characters so far (an escape or a multi-byte character counts once)
    esc: int = 0
    pend: bytes = b""  # an unfinished UTF-8 character


class NumF(NamedTuple):
    node: Num
    text: bytes = b""


class LitF(NamedTuple):
    options: tuple[bytes, ...]
    acc: bytes = b""


Frame = Expect | ObjF | ArrF | StrF | NumF | LitF
Stack = tuple[Frame, ...]  # outermost first; () is a finished document
State = tuple[Stack, ...]  # every reading still possible; () means the bytes fit no reading


# -- building nodes from a schema ---------------------------------------------------------------------
class _Builder:
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


def _flatten(node: Node | None, seen: set[int] | None = None) -> list[Node]:
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
        for n in _flatten(alt, seen):
            if all(n is not m for m in out):
                out.append(n)
    return out


# -- numbers ------------------------------------------------------------------------------------------
def _number_ok(node: Num, text: bytes) -> bool:
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
    if _number_ok(node, text):
        found = b""
    else:
        frontier = [b""]
        for _ in range(3):
            frontier = [s + c for s in frontier for c in _SUFFIX_ALPHABET]
            found = next((s for s in frontier if _number_ok(node, text + s)), None)
            if found is not None:
                break
        if found is None:  # far from the range: pad the integer part, maybe add a fraction
            for k in range(4, 24):
                for s in (b"0" * k, b"1" + b"0" * (k - 1), b"9" * k, b"0" * (k - 2) + b".1",
                          b"." + b"0" * (k - 2) + b"1"):
                    if _number_ok(node, text + s):
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
class _Minimal:
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
            return _shortest(self.of(alt) for alt in node.alts)
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


def _shortest(options: Iterable[bytes | None]) -> bytes | None:
    best: bytes | None = None
    for option in options:
        if option is not None and (best is None or len(option) < len(best)):
            best = option
    return best


# -- strings ------------------------------------------------------------------------------------------
def _utf8_total(lead: int) -> int:
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    return 2


def _utf8_tail(text: bytes) -> bytes:
    """The unfinished UTF-8 character at the end of ``text`` (b"" if none)."""
    for back in range(1, min(4, len(text)) + 1):
        byte = text[-back]
        if byte >= 0xC0:
            return text[-back:] if back < _utf8_total(byte) else b""
        if byte < 0x80:
            return b""
    return b""


def _finish_utf8(pend: bytes) -> bytes:
    """Continuation bytes that complete the partial UTF-8 character ``pend``."""
    missing = _utf8_total(pend[0]) - len(pend)
    for second in (0x80, 0x90, 0xA0):
        tail = bytes([second] + [0x80] * (missing - 1)) if len(pend) == 1 else bytes([0x80] * missing)
        try:
            (pend + tail).decode()
            return tail
        except UnicodeDecodeError:
            continue
    return bytes([0x80] * missing)


def _string_byte(esc: int, pend: bytes, b: int) -> tuple[int, bytes, int] | None:
    """Advance a string body by byte ``b`` (not a closing quote): ``(esc, pend, chars added)``, or
    None if the byte cannot appear there. ``esc``: 0 plain, 1 after a backslash, 2-5 inside
    ``\\u`` with ``esc - 2`` hex digits read."""
    if esc == 1:
        if b == ord("u"):
            return 2, pend, 0
        return (0, pend, 0) if b in b'"\\/bfnrt' else None
    if esc >= 2:
        if b not in HEX:
            return None
        return (0 if esc == 5 else esc + 1), pend, 0
    if pend:
        if not 0x80 <= b < 0xC0:
            return None
        pend += bytes([b])
        return 0, (b"" if len(pend) == _utf8_total(pend[0]) else pend), 0
    if b == ord("\\"):
        return 1, b"", 1
    if b < 0x20:
        return None
    if b < 0x80:
        return 0, b"", 1
    if b >= 0xC0:
        return 0, bytes([b]), 1
    return None


def _finish_string(esc: int, pend: bytes) -> bytes:
    if esc == 1:
        return b"n"
    if esc >= 2:
        return b"0" * (6 - esc)
    return _finish_utf8(pend) if pend else b""


# -- the completer -------------------------------------------------------------------------------------
class Completer:
    """Incremental reader of JSON text under one schema, with shortest completions.

    >>> c = Completer({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    >>> c.completion(c.feed(c.start(), b'{"a'))
    b'":0}'
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        builder = _Builder(schema)
        root = builder.build(schema)
        if root is None:
            raise Unsupported("the schema allows nothing")
        self.root = root
        self.minimal = _Minimal()
        if self.minimal.of(root) is None:
            raise Unsupported("no finite instance")

    def start(self) -> State:
        return ((Expect(tuple(_flatten(self.root))),),)

    def feed(self, state: State, data: bytes) -> State:
        """The state after ``data``; ``()`` when no reading of the schema accepts it."""
        stacks = state
        for b in data:
            out: dict[Stack, None] = {}
            for stack in stacks:
                for new in self._step(stack, b):
                    out[new] = None
            if len(out) > MAX_STACKS:
                raise Unsupported("too many ways to read the output so far")
            stacks = tuple(out)
            if not stacks:
                return ()
        return stacks

    def completion(self, state: State) -> bytes | None:
        """The shortest bytes that make the text read so far a valid document (b"" if it is one)."""
        return _shortest(self._complete(stack) for stack in state)

    def completions(self, state: State) -> list[bytes]:
        """Every reading's completion, shortest first (to try the next when one is refused)."""
        found = {c for c in (self._complete(s) for s in state) if c is not None}
        return sorted(found, key=len)

    # -- reading one byte -------------------------------------------------------------------------
    def _step(self, stack: Stack, b: int) -> list[Stack]:
        if not stack:
            return []  # the document is finished: nothing may follow
        top, below = stack[-1], stack[:-1]
        if isinstance(top, Expect):
            return self._start_value(below, top.cands, b)
        if isinstance(top, StrF):
            return self._string(below, top, b)
        if isinstance(top, NumF):
            text = top.text + bytes([b])
            if b in NUMBER_BYTES and number_suffix(top.node, text) is not None:
                return [(*below, top._replace(text=text))]
            if _number_ok(top.node, top.text):
                return self._step(self._done(below), b)
            return []
        if isinstance(top, LitF):
            acc = top.acc + bytes([b])
            if any(o.startswith(acc) for o in top.options):
                return [(*below, top._replace(acc=acc))]
            if top.acc in top.options:
                return self._step(self._done(below), b)
            return []
        if isinstance(top, ObjF):
            return self._object(below, top, b)
        return self._array(below, top, b)

    def _start_value(self, below: Stack, cands: tuple[Node, ...], b: int) -> list[Stack]:
        out: list[Stack] = []
        for node in cands:
            if isinstance(node, Obj) and b == ord("{"):
                out.append((*below, ObjF(node, "open")))
            elif isinstance(node, Arr) and b == ord("["):
                out.append((*below, ArrF(node, "open")))
            elif isinstance(node, Str) and b == ord('"'):
                out.append((*below, StrF(node)))
            elif isinstance(node, Num) and b in b"-0123456789":
                out.extend(self._step((*below, NumF(node)), b))
            elif isinstance(node, Lit):
                out.extend(self._step((*below, LitF(node.options)), b))
        return out

    @staticmethod
    def _done(below: Stack) -> Stack:
        """``below`` after the value on top of it ended."""
        if not below:
            return ()
        parent = below[-1]
        if isinstance(parent, ObjF):
            return (*below[:-1], parent._replace(state="next"))
        if isinstance(parent, ArrF):
            return (*below[:-1], parent._replace(state="next", count=parent.count + 1))
        raise AssertionError(f"a value inside {type(parent).__name__}")

    def _string(self, below: Stack, top: StrF, b: int) -> list[Stack]:
        node = top.node
        if b == ord('"') and top.esc == 0 and not top.pend:
            return [self._done(below)] if top.count >= node.min_len else []
        step = _string_byte(top.esc, top.pend, b)
        if step is None:
            return []
        esc, pend, added = step
        count = top.count + added
        if node.max_len is not None and count > node.max_len:
            return []
        return [(*below, StrF(node, count, esc, pend))]

    def _object(self, below: Stack, top: ObjF, b: int) -> list[Stack]:
        node, state = top.node, top.state
        if state in ("open", "comma"):
            if b == ord('"'):
                if node.max_props is not None and top.count >= node.max_props:
                    return []
                return [(*below, top._replace(state="key", key=b"", esc=0))]
            if b == ord("}") and state == "open" and not node.required:
                return [self._done(below)]
            return []
        if state == "key":
            if b == ord('"') and top.esc == 0:
                index = node.index.get(top.key)
                if index is not None and index > top.pos and not top.extra and not self._skips(node, top.pos, index):
                    return [(*below, top._replace(state="colon", pos=index, count=top.count + 1))]
                if index is None and node.additional is not None and not self._skips(node, top.pos, len(node.props)):
                    return [(*below, top._replace(state="colon", extra=True, count=top.count + 1))]
                return []
            step = _string_byte(top.esc, _utf8_tail(top.key), b)
            if step is None:
                return []
            key = top.key + bytes([b])
            if node.additional is None and not any(
                name.startswith(key) and i > top.pos and not top.extra for i, (name, _) in enumerate(node.props)
            ):
                return []
            return [(*below, top._replace(key=key, esc=step[0]))]
        if state == "colon":
            if b != ord(":"):
                return []
            value = node.additional if top.extra else node.props[top.pos][1]
            return [(*below, top._replace(state="value", key=b""), Expect(tuple(_flatten(value))))]
        if state == "next":
            if b == ord(","):
                if node.max_props is not None and top.count >= node.max_props:
                    return []
                return [(*below, top._replace(state="comma"))]
            if b == ord("}") and (top.extra and not any(r > top.pos for r in node.required)
                                  or not top.extra and not self._skips(node, top.pos, len(node.props))):
                return [self._done(below)]
        return []

    @staticmethod
    def _skips(node: Obj, pos: int, index: int) -> bool:
        """Jumping from declared index ``pos`` to ``index`` would skip a required property."""
        return any(pos < r < index for r in node.required)

    def _array(self, below: Stack, top: ArrF, b: int) -> list[Stack]:
        node, state = top.node, top.state
        if state == "open" and b == ord("]"):
            return [self._done(below)] if node.min_items == 0 else []
        if state in ("open", "comma"):
            item = node.item(top.count)
            if item is None:
                return []
            return self._step((*below, top._replace(state="value"), Expect(tuple(_flatten(item)))), b)
        if state == "next":
            if b == ord(","):
                if node.max_items is not None and top.count >= node.max_items or node.item(top.count) is None:
                    return []
                return [(*below, top._replace(state="comma"))]
            if b == ord("]") and top.count >= node.min_items:
                return [self._done(below)]
        return []

    # -- completing -------------------------------------------------------------------------------
    def _complete(self, stack: Stack) -> bytes | None:
        out = b""
        for depth in range(len(stack) - 1, -1, -1):
            frame = stack[depth]
            part = self._close(frame, top=depth == len(stack) - 1)
            if part is None:
                return None
            out += part
        return out

    def _close(self, frame: Frame, *, top: bool) -> bytes | None:
        m = self.minimal
        if isinstance(frame, Expect):
            return _shortest(m.of(n) for n in frame.cands)
        if isinstance(frame, StrF):
            pad = b"a" * max(0, frame.node.min_len - frame.count)
            return _finish_string(frame.esc, frame.pend) + pad + b'"'
        if isinstance(frame, NumF):
            return number_suffix(frame.node, frame.text)
        if isinstance(frame, LitF):
            return _shortest(o[len(frame.acc):] for o in frame.options if o.startswith(frame.acc))
        if isinstance(frame, ArrF):
            return self._close_array(frame, top=top)
        return self._close_object(frame, top=top)

    def _close_array(self, frame: ArrF, *, top: bool) -> bytes | None:
        node, count, m = frame.node, frame.count, self.minimal
        state = "next" if frame.state == "value" and not top else frame.state
        if frame.state == "value" and not top:
            count += 1  # the item above us is finished by the completion of the frames above
        parts: list[bytes | None] = []
        if state == "comma":
            parts.append(m.of(node.item(count)))
            count += 1
        elif state == "open" and node.min_items == 0:
            return b"]"
        first = state == "open"
        for i in range(count, node.min_items):
            item = m.of(node.item(i))
            parts.append(item if first else None if item is None else b"," + item)
            first = False
        if any(p is None for p in parts):
            return None
        return b"".join(parts) + b"]"  # type: ignore[arg-type]

    def _close_object(self, frame: ObjF, *, top: bool) -> bytes | None:
        node, m = frame.node, self.minimal
        state = "next" if frame.state == "value" and not top else frame.state
        if state == "open":
            return m.rest(node, -1, first=True)
        if state == "next":
            if frame.extra:
                return b"}" if not any(r > frame.pos for r in node.required) else None
            return m.rest(node, frame.pos, first=False)
        if state == "colon":
            value = m.of(node.additional if frame.extra else node.props[frame.pos][1])
            rest = self._after(frame, frame.pos, frame.extra)
            return None if value is None or rest is None else b":" + value + rest
        if state == "comma":
            members = [self._member(frame, name, i) for i, (name, _) in enumerate(node.props)
                       if i > frame.pos and not frame.extra]
            return _shortest([*members, self._extra_member(frame)])
        # inside a key
        key = frame.key
        options: list[bytes | None] = []
        if not frame.extra and frame.esc == 0:
            for i, (name, _) in enumerate(node.props):
                if i > frame.pos and name.startswith(key):
                    member = self._member(frame, name, i)
                    options.append(None if member is None else member[1 + len(key):])
        if node.additional is not None and not any(r > frame.pos for r in node.required):
            finish = _finish_string(frame.esc, _utf8_tail(key))
            if (key + finish) not in node.index:
                value = m.of(node.additional)
                options.append(None if value is None else finish + b'":' + value + b"}")
        return _shortest(options)

    def _member(self, frame: ObjF, name: bytes, index: int) -> bytes | None:
        """``"name":value`` for declared property ``index`` written next, then the object's end."""
        if self._skips(frame.node, frame.pos, index):
            return None
        value = self.minimal.of(frame.node.props[index][1])
        rest = self._after(frame, index, False)
        return None if value is None or rest is None else b'"' + name + b'":' + value + rest

    def _extra_member(self, frame: ObjF) -> bytes | None:
        node = frame.node
        if node.additional is None or any(r > frame.pos for r in node.required) or b"" in node.index:
            return None
        value = self.minimal.of(node.additional)
        return None if value is None else b'"":' + value + b"}"

    def _after(self, frame: ObjF, pos: int, extra: bool) -> bytes | None:
        if extra:
            return b"}"
        return self.minimal.rest(frame.node, pos, first=False)
