"""Parametric families: a template part expands into primitive parts in the template's local frame.

Each family is a function ``(params, ctx) -> list[PrimitivePart]``. Its local frame is centred on
the bounding box of the result (like every primitive), so a template part's ``position`` is the
centre of the object. Missing parameters are resolved through :class:`Ctx`, which records a note
for each value it had to assume; inconsistent ones raise :class:`ParamError` naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel

from vlserve.recon3d.spec import TemplateBase
from vlserve.recon3d.templates import furniture, gear, mechanical
from vlserve.recon3d.templates.base import Ctx, Expansion, Family, ParamError

FAMILIES: dict[str, Family] = {
    "flange": mechanical.flange,
    "impeller": mechanical.impeller,
    "spur_gear": gear.spur_gear,
    "bracket": mechanical.bracket,
    "enclosure_box": mechanical.enclosure_box,
    "table": furniture.table,
    "chair": furniture.chair,
    "shelf": furniture.shelf,
}


def expand(part: TemplateBase, mm_per_unit: float = 1.0) -> Expansion:
    """Expand a template part into primitives in its local frame (raises ParamError)."""
    ctx = Ctx(mm_per_unit)
    family = FAMILIES[part.template]
    params: BaseModel = part.params
    return Expansion(family(params, ctx), ctx.notes)


__all__ = ["FAMILIES", "Ctx", "Expansion", "ParamError", "expand"]
