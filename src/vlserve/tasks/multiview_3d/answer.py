"""Reading the model's answer: a JSON object, completed when the token budget cut it off.

Under schema-constrained decoding the answer is always a *prefix* of a valid document; when
``max_tokens`` runs out it simply stops. :func:`complete_json` cuts such a prefix back to the last
complete value and closes every open array and object, so what the model did finish (its first
parts) is still built; the unfinished part is left out and the caller says so. Text that is not
a JSON object at all (an unconstrained engine, chatter around it) is searched for its first
``{``; with none, the answer is refused with a message, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vlserve.errors import RequestError

MIN_TOKENS_HINT = 400
"""a budget that fits a small spec with one or two parts (what the refusal suggests at least)"""


@dataclass(frozen=True)
class ReadAnswer:
    """The model's document, and whether it had to be completed."""

    document: dict[str, Any]
    completed: bool
    """True when the text was cut off and closed by :func:`complete_json`"""


def complete_json(text: str) -> str | None:
    """Close a truncated JSON object: cut back to the last complete member, close what is open.

    Returns None when no complete member exists yet (``{"spec_versi``). Object members and array
    items count as complete once their value has ended; a dangling key or comma is dropped.
    """
    stack: list[str] = []
    in_string = escaped = False
    expect_value = False  # after ':' inside an object, until its value ends
    safe: tuple[int, tuple[str, ...]] | None = None  # (cut position, open containers at that point)
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if not (stack and stack[-1] == "{" and not expect_value):  # a value, not a key
                    expect_value = False
                    safe = (i + 1, tuple(stack))
            i += 1
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
            expect_value = False
            if len(stack) == 1:
                safe = None
        elif ch in "}]":
            if stack:
                stack.pop()
            expect_value = False
            safe = (i + 1, tuple(stack))
            if not stack:
                return text[: i + 1]
        elif ch == ":":
            expect_value = True
        elif ch == ",":
            expect_value = False
        elif not ch.isspace():
            # a number, true, false or null: complete once the next delimiter is seen
            j = i
            while j < len(text) and text[j] not in ",}] \n\r\t":
                j += 1
            if j < len(text):
                expect_value = False
                safe = (j, tuple(stack))
            i = j
            continue
        i += 1
    if safe is None or not safe[1]:
        return None
    cut, open_containers = safe
    closers = "".join("}" if c == "{" else "]" for c in reversed(open_containers))
    return text[:cut] + closers


def read_answer(text: str) -> ReadAnswer:
    """The model's text → its JSON object, completed if it was cut off (4000 when there is none)."""
    start = text.find("{")
    if start < 0:
        raise RequestError("the model's answer contains no object spec (no JSON object); try again, or with "
                           "another model")
    body = text[start:]
    try:
        data, _end = json.JSONDecoder().raw_decode(body)  # chatter after the object is ignored
        completed = False
    except RecursionError:
        raise RequestError("the model's answer nests too deeply to be an object spec") from None
    except ValueError:
        closed = complete_json(body)
        data = _loads(closed) if closed is not None else None
        if data is None:
            raise RequestError(
                "the model's answer was cut off before it described any part of the object; raise "
                f"max_tokens (at least {MIN_TOKENS_HINT}) or ask for a simpler object",
                min_max_tokens=MIN_TOKENS_HINT,
            ) from None
        completed = True
    if not isinstance(data, dict):
        raise RequestError("the model's answer is not an object spec (a JSON object was expected)")
    return ReadAnswer(data, completed)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
