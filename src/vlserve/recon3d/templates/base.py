"""Shared pieces of the template families: parameter resolution, errors and part builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlserve.recon3d.spec import (
    BoxPart,
    BoxSize,
    CylinderPart,
    CylinderSize,
    ExtrudePart,
    ExtrudeSize,
    Op,
    PrimitivePart,
    PrismPart,
    PrismSize,
)


class ParamError(ValueError):
    """A template parameter that cannot work with the others; ``field`` names it."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


@dataclass
class Ctx:
    """Resolution context: the spec's unit and the notes on assumed values."""

    mm_per_unit: float = 1.0
    notes: list[str] = field(default_factory=list)

    def mm(self, millimetres: float) -> float:
        """An absolute default given in mm, converted to spec units."""
        return millimetres / self.mm_per_unit

    def pick(self, name: str, value: float | None, default: float, why: str) -> float:
        """``value`` if given, else ``default`` (and a note saying so)."""
        if value is not None:
            return float(value)
        self.notes.append(f"{name} = {default:.4g} ({why})")
        return float(default)

    def pick_int(self, name: str, value: int | None, default: int, why: str = "default") -> int:
        """Integer flavour of :meth:`pick`."""
        if value is not None:
            return int(value)
        self.notes.append(f"{name} = {default} ({why})")
        return default


@dataclass(frozen=True)
class Expansion:
    """The primitives a template became, and the assumptions made on the way."""

    parts: list[PrimitivePart]
    notes: list[str]


Family = Callable[[Any, Ctx], list[PrimitivePart]]
OVERSHOOT = 0.02
"""Cutters stick out this fraction of the cut thickness on each side: a through-hole then never
leaves a zero-thickness skin, whatever the CSG kernel does with coplanar faces."""


# --- small builders used by the families --------------------------------------------------------


def box(
    id: str,
    x: float,
    y: float,
    z: float,
    at: tuple[float, float, float] = (0, 0, 0),
    op: Op = "union",
    **kw: Any,
) -> BoxPart:
    """A box primitive centred at ``at``."""
    return BoxPart(id=id, shape="box", size=BoxSize(x=x, y=y, z=z), position=list(at), op=op, **kw)


def cylinder(
    id: str, d: float, h: float, at: tuple[float, float, float] = (0, 0, 0), op: Op = "union", **kw: Any
) -> CylinderPart:
    """A z-axis cylinder primitive centred at ``at``."""
    size = CylinderSize(diameter=d, height=h)
    return CylinderPart(id=id, shape="cylinder", size=size, position=list(at), op=op, **kw)


def prism(
    id: str,
    sides: int,
    across_flats: float,
    h: float,
    at: tuple[float, float, float] = (0, 0, 0),
    op: Op = "union",
    **kw: Any,
) -> PrismPart:
    """A regular prism primitive centred at ``at``."""
    size = PrismSize(sides=sides, across_flats=across_flats, height=h)
    return PrismPart(id=id, shape="prism", size=size, position=list(at), op=op, **kw)


def extrusion(
    id: str,
    polygon: list[list[float]],
    h: float,
    at: tuple[float, float, float] = (0, 0, 0),
    op: Op = "union",
    **kw: Any,
) -> ExtrudePart:
    """An extruded polygon primitive, centred in z at ``at``.

    The polygon skips validation: templates produce outlines (a 40-tooth gear) longer than the
    schema's ``maxItems`` for model-written polygons, and they are correct by construction.
    """
    size = ExtrudeSize.model_construct(polygon=polygon, height=h)
    return ExtrudePart(id=id, shape="extrude", size=size, position=list(at), op=op, **kw)


def bore(
    id: str, shape: str, size: float, h: float, at: tuple[float, float, float] = (0, 0, 0)
) -> PrimitivePart | None:
    """A subtracted round/hex/square bore along z, or None for ``shape == "none"``."""
    if shape == "round":
        return cylinder(id, size, h, at, op="subtract")
    if shape in ("hex", "square"):
        return prism(id, 6 if shape == "hex" else 4, size, h, at, op="subtract")
    return None


def bore_radius(shape: str, size: float) -> float:
    """Outer radius of a bore (its corner radius for hex and square)."""
    return {"round": size / 2, "hex": size / 3**0.5, "square": size / 2**0.5}.get(shape, 0.0)
