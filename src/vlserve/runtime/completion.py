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

from typing import Any, NamedTuple

from vlserve.runtime.schema_nodes import (
    SUPPORTED,
    Arr,
    Lit,
    Minimal,
    Node,
    Num,
    Obj,
    Str,
    Unsupported,
    build,
    flatten,
    number_ok,
    number_suffix,
    shortest,
)

__all__ = ["SUPPORTED", "Completer", "State", "Unsupported"]

MAX_STACKS = 512  # readings of one prefix kept apart; past this the schema is too ambiguous for us
NUMBER_BYTES = frozenset(b"0123456789.eE+-")
HEX = frozenset(b"0123456789abcdefABCDEF")


# -- parser frames (immutable; feeding bytes makes new ones) ------------------------------------------
class Expect(NamedTuple):
    """A value is due; ``cands`` are the node kinds it may still take."""

    cands: tuple[Node, ...]


class ObjF(NamedTuple):
    node: Obj
    state: str  # "open" after {, "comma" after ",", "key" inside a key, "colon", "value", "next"
    pos: int = -1  # index of the last declared property written
    written: int = 0  # properties written (or being written)
    key: bytes = b""  # the key so far (state "key")
    esc: int = 0  # escape state inside the key (see _string_byte)
    extra: bool = False  # writing additional properties (no declared one may follow)


class ArrF(NamedTuple):
    node: Arr
    state: str  # "open" after [, "comma" after ",", "value", "next"
    items: int = 0  # items finished


class StrF(NamedTuple):
    node: Str
    chars: int = 0  # characters so far (an escape or a multi-byte character counts once)
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
        self.root = build(schema)
        self.minimal = Minimal()
        if self.minimal.of(self.root) is None:
            raise Unsupported("no finite instance")

    def start(self) -> State:
        return ((Expect(tuple(flatten(self.root))),),)

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
        return shortest(self._complete(stack) for stack in state)

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
            if number_ok(top.node, top.text):
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
            return (*below[:-1], parent._replace(state="next", items=parent.items + 1))
        raise AssertionError(f"a value inside {type(parent).__name__}")

    def _string(self, below: Stack, top: StrF, b: int) -> list[Stack]:
        node = top.node
        if b == ord('"') and top.esc == 0 and not top.pend:
            return [self._done(below)] if top.chars >= node.min_len else []
        step = _string_byte(top.esc, top.pend, b)
        if step is None:
            return []
        esc, pend, added = step
        chars = top.chars + added
        if node.max_len is not None and chars > node.max_len:
            return []
        return [(*below, StrF(node, chars, esc, pend))]

    def _object(self, below: Stack, top: ObjF, b: int) -> list[Stack]:
        node, state = top.node, top.state
        if state in ("open", "comma"):
            if b == ord('"'):
                if node.max_props is not None and top.written >= node.max_props:
                    return []
                return [(*below, top._replace(state="key", key=b"", esc=0))]
            if b == ord("}") and state == "open" and not node.required:
                return [self._done(below)]
            return []
        if state == "key":
            if b == ord('"') and top.esc == 0:
                index = node.index.get(top.key)
                if index is not None and index > top.pos and not top.extra and not self._skips(node, top.pos, index):
                    return [(*below, top._replace(state="colon", pos=index, written=top.written + 1))]
                if index is None and node.additional is not None and not self._skips(node, top.pos, len(node.props)):
                    return [(*below, top._replace(state="colon", extra=True, written=top.written + 1))]
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
            return [(*below, top._replace(state="value", key=b""), Expect(tuple(flatten(value))))]
        if state == "next":
            if b == ord(","):
                if node.max_props is not None and top.written >= node.max_props:
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
            item = node.item(top.items)
            if item is None:
                return []
            return self._step((*below, top._replace(state="value"), Expect(tuple(flatten(item)))), b)
        if state == "next":
            if b == ord(","):
                if node.max_items is not None and top.items >= node.max_items or node.item(top.items) is None:
                    return []
                return [(*below, top._replace(state="comma"))]
            if b == ord("]") and top.items >= node.min_items:
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
            return shortest(m.of(n) for n in frame.cands)
        if isinstance(frame, StrF):
            pad = b"a" * max(0, frame.node.min_len - frame.chars)
            return _finish_string(frame.esc, frame.pend) + pad + b'"'
        if isinstance(frame, NumF):
            return number_suffix(frame.node, frame.text)
        if isinstance(frame, LitF):
            return shortest(o[len(frame.acc):] for o in frame.options if o.startswith(frame.acc))
        if isinstance(frame, ArrF):
            return self._close_array(frame, top=top)
        return self._close_object(frame, top=top)

    def _close_array(self, frame: ArrF, *, top: bool) -> bytes | None:
        node, count, m = frame.node, frame.items, self.minimal
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
            return shortest([*members, self._extra_member(frame)])
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
        return shortest(options)

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
