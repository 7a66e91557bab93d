"""Errors of the spec → CAD pipeline, slotted under :class:`vlserve.errors.RequestError`.

    RequestError                4000
    └── SpecError               4000  the spec is invalid (names part and field)
        └── GeometryError       4000  the spec is valid but describes impossible geometry

Both carry ``path`` (``parts[2] (id="bolt_holes").size.diameter``) and ``reason`` separately in
``details`` so an API or a retrying model loop can point at the offending field.
"""

from __future__ import annotations

from typing import Any

from vlserve.errors import RequestError


class SpecError(RequestError):
    """An object spec that does not validate; the message names the part and field."""

    def __init__(self, message: str, *, path: str = "", reason: str = "", **details: Any) -> None:
        super().__init__(message, path=path, reason=reason, **details)
        self.path = path
        self.reason = reason or message

    @classmethod
    def at(cls, path: str, reason: str, **details: Any) -> SpecError:
        """Build the error for one field: ``"{path}: {reason}"``."""
        return cls(f"{path}: {reason}" if path else reason, path=path, reason=reason, **details)


class GeometryError(SpecError):
    """Valid fields that describe impossible geometry (empty result, degenerate polygon...)."""


def part_path(index: int, part_id: str | None, prefix: str = "parts") -> str:
    """``parts[2] (id="bolt_holes")``: how every message refers to a part."""
    label = f"{prefix}[{index}]"
    return f'{label} (id="{part_id}")' if part_id else label
