"""Map a :class:`~vlserve.recon3d.text.reading.Reading` (roles, counts, flags) onto template parameters.

One small function per family decides which role feeds which parameter (``"80 mm flange"``: the
size next to the object's name is its diameter; ``"120 x 60 cm"`` next to a table is length ×
width). The draft is validated like any spec, and the template's own defaults are added to the
assumptions so the caller sees every number that did not come from the text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.spec import ObjectSpec, TemplateBase
from vlserve.recon3d.templates import ParamError, expand
from vlserve.recon3d.text.reading import APPROXIMATE, CONFIDENT, Group, Number, Reading, Value
from vlserve.recon3d.text.shapes import STANDARD, primitives, standard_parts
from vlserve.recon3d.validation import load_spec

CATEGORIES = {
    "flange": "mechanical",
    "impeller": "mechanical",
    "spur_gear": "mechanical",
    "bracket": "mechanical",
    "enclosure_box": "enclosure",
    "table": "furniture",
    "chair": "furniture",
    "shelf": "furniture",
}


@dataclass
class TextDraft:
    """The result of :func:`~vlserve.recon3d.text.parse_description`."""

    spec: ObjectSpec
    """the spec draft (mm)"""
    template: str
    assumptions: list[str]
    reading: Reading
    numbers: list[Number] = field(default_factory=list)
    """every number of the text: what it set (``uses``) or why it was ignored"""


class _Draft:
    """Collects parameters with their confidence."""

    def __init__(self, reading: Reading) -> None:
        self.r = reading
        self.params: dict[str, Any] = {}
        self.confidence: dict[str, float] = {}

    def put(self, name: str, value: Value | None, transform: Callable[[float], float] = lambda v: v) -> bool:
        if value is None or name in self.params:
            return False
        self.params[name] = round(transform(value.value), 6)
        self.confidence[name] = APPROXIMATE if value.approx else CONFIDENT
        self.r.use(value.source, f"{name} = {self.params[name]:g}")
        return True

    def put_plain(self, name: str, value: Any, why: str | None = None) -> None:
        self.params[name] = value
        if why:
            self.r.assumptions.append(why)

    def count(self, name: str, key: str) -> None:
        if key in self.r.counts:
            self.params[name] = self.r.count(key, f"{name} = {self.r.counts[key]}")
            self.confidence[name] = CONFIDENT

    def group(self) -> Group | None:
        return self.r.groups[0] if self.r.groups else None

    def bore_shape(self) -> None:
        flags = self.r.flags
        shape = (
            "none"
            if "no_bore" in flags
            else "hex"
            if "hex" in flags
            else "square"
            if "square" in flags
            else None
        )
        if shape:
            self.params["bore_shape"] = shape


def _flange(d: _Draft) -> None:
    r = d.r
    d.put("diameter", r.first("diameter", "outer_diameter", "main"))
    d.put("thickness", r.first("thickness", "height"))
    holes = r.count("bolt", "bolt_count") if "bolt" in r.counts else r.count("hole", "bolt_count")
    d.put(
        "bore_size", r.first("bore") or (r.first("hole") if holes is None and "bolt" not in r.dims else None)
    )
    d.put("bolt_diameter", r.first("bolt") or (r.first("hole") if holes is not None else None))
    if holes is not None:
        d.params["bolt_count"], d.confidence["bolt_count"] = holes, CONFIDENT
    d.put("bolt_circle_diameter", r.first("bcd"))
    d.put("hub_diameter", r.first("hub"))
    d.bore_shape()


def _impeller(d: _Draft) -> None:
    r = d.r
    d.put("diameter", r.first("diameter", "outer_diameter", "main"))
    d.put("height", r.first("height", "thickness"))
    d.put("hub_diameter", r.first("hub"))
    d.put("blade_thickness", r.first("blade_thickness"))
    d.put("bore_size", r.first("bore", "hole"))
    d.count("blade_count", "blade")
    d.bore_shape()
    if "straight" in r.flags:
        d.put_plain("curvature", 0.0)
    elif "forward" in r.flags:
        d.put_plain("curvature", -30.0, "forward-curved blades: curvature = -30°")


def _gear(d: _Draft) -> None:
    r = d.r
    d.count("teeth", "teeth")
    d.put("module", r.first("module"))
    pitch = r.first("pitch_diameter")
    if pitch and "module" not in d.params:
        teeth = int(d.params.get("teeth", 20))
        d.put("module", pitch, lambda v: v / teeth)
    outer = r.first("outer_diameter", "diameter", "main")
    if outer and "module" not in d.params:
        d.put("outer_diameter", outer)
        if r.first("outer_diameter") is None:
            r.assumptions.append("the gear's diameter was taken as its tip (outside) diameter")
    d.put("thickness", r.first("thickness", "width", "height"))
    d.put("bore_size", r.first("bore", "hole"))
    d.bore_shape()


def _bracket(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        for name, value in zip(
            ("length", "width", "thickness"), sorted(group[0], reverse=True), strict=False
        ):
            d.put(name, Value(value, group.approx, group.source))
        r.assumptions.append("the size group was read as length × width × thickness")
    d.put("length", r.first("length", "main"))
    d.put("height", r.first("height"))
    d.put("width", r.first("width"))
    d.put("thickness", r.first("thickness"))
    d.put("hole_diameter", r.first("hole", "bolt"))
    holes = r.count("hole", "holes_per_leg") if "hole" in r.counts else r.count("bolt", "holes_per_leg")
    if holes is not None:
        d.params["holes_per_leg"] = max(1, math.ceil(holes / 2))
        r.assumptions.append(f"{holes} holes split over the two legs: {d.params['holes_per_leg']} per leg")
    if "gusset" in r.flags:
        d.params["gusset"] = True


def _enclosure(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        for name, value in zip(("length", "width", "height"), group[0], strict=False):
            d.put(name, Value(value, group.approx, group.source))
    d.put("length", r.first("length", "main"))
    d.put("width", r.first("width", "depth"))
    d.put("height", r.first("height"))
    d.put("wall_thickness", r.first("wall", "thickness"))
    d.put("cable_hole_diameter", r.first("hole", "bore"))
    if "closed" in r.flags:
        d.params["open_top"] = False


def _table(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        values = group[0]
        top = sorted(values[:2], reverse=True)
        d.put("length", Value(top[0], group.approx, group.source))
        if len(top) > 1:
            d.put("width", Value(top[1], group.approx, group.source))
        if len(values) > 2:
            d.put("height", Value(values[2], group.approx, group.source))
    d.put("length", r.first("length", "main", "diameter"))
    d.put("width", r.first("width", "depth"))
    d.put("height", r.first("height"))
    d.put("top_thickness", r.first("thickness"))
    d.put("leg_size", r.first("leg"))
    if "round_legs" in r.flags:
        d.params["leg_shape"] = "round"


def _chair(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        for name, value in zip(("seat_width", "seat_depth"), group[0][:2], strict=False):
            d.put(name, Value(value, group.approx, group.source))
        if len(group[0]) > 2:
            r.dims.setdefault("height", []).insert(0, Value(group[0][2], group.approx, group.source))
    d.put("seat_width", r.first("width", "main"))
    d.put("seat_depth", r.first("depth"))
    d.put("seat_height", r.first("seat"))
    d.put("back_height", r.first("back"))
    total = r.first("height")
    if total and "back_height" not in d.params:
        seat = d.params.get("seat_height", min(450.0, 0.5 * total.value))
        if total.value > seat:
            d.put("back_height", total, lambda v: v - seat)
            r.assumptions.append(f"overall height {total.value:g} mm read as seat height {seat:g} + backrest")
    d.put("seat_thickness", r.first("seat_thickness", "thickness"))
    d.put("leg_size", r.first("leg"))
    if "round_legs" in r.flags:
        d.params["leg_shape"] = "round"


def _shelf(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        for name, value in zip(("width", "depth", "height"), group[0], strict=False):
            d.put(name, Value(value, group.approx, group.source))
    d.put("width", r.first("width", "length"))
    d.put("depth", r.first("depth"))
    d.put("height", r.first("height", "main"))
    d.put("board_thickness", r.first("thickness"))
    d.count("shelf_count", "shelves")
    if "no_back" in r.flags:
        d.params["back_panel"] = False


TEMPLATE_MAPPERS: dict[str, Callable[[_Draft], None]] = {
    "flange": _flange,
    "impeller": _impeller,
    "spur_gear": _gear,
    "bracket": _bracket,
    "enclosure_box": _enclosure,
    "table": _table,
    "chair": _chair,
    "shelf": _shelf,
}


def build_draft(r: Reading) -> TextDraft:
    """Assemble, validate and annotate the spec draft for ``r``."""
    template = str(r.template)
    if template in TEMPLATE_MAPPERS:
        d = _Draft(r)
        TEMPLATE_MAPPERS[template](d)
        part: dict[str, Any] = {"id": template, "shape": "template", "template": template, "params": d.params}
        if d.confidence:
            part["confidence"] = d.confidence
        parts = [part]
    elif template in STANDARD:
        parts = standard_parts(r)
    else:
        parts = primitives(r)
    spec_data = {
        "spec_version": "1.0",
        "name": template.replace("_", " "),
        "category": CATEGORIES.get(template, "part"),
        "units": "mm",
        "description": r.text.strip()[:2000],
        "parts": parts,
    }
    try:
        spec = load_spec(spec_data)
    except SpecError as err:
        raise SpecError(f"the description gives an invalid {template}: {err.message}", path=err.path) from err
    _add_template_notes(spec, r)
    _report_numbers(r)
    return TextDraft(spec=spec, template=template, assumptions=r.assumptions, reading=r, numbers=r.numbers)


def _report_numbers(r: Reading) -> None:
    """Every number the text states is used (``uses``) or listed as ignored, with the reason."""
    for number in r.numbers:
        if number.uses:
            continue
        if number.kind == "count" and number.role is None and number.text in ("1", "一", "one", "a", "an"):
            number.uses.append("one object")  # 一个法兰, one flange: an article, not a dimension
            continue
        what = f"read as {number.role}" if number.role else "no keyword says what it measures"
        if number.role:
            number.ignored = f"the {str(r.template).replace('_', ' ')} has no use for it ({what}, or already set)"
        else:
            number.ignored = what
        r.assumptions.append(f"ignored {number.text!r}: {number.ignored}")


def _add_template_notes(spec: ObjectSpec, r: Reading) -> None:
    for part in spec.parts:
        if isinstance(part, TemplateBase):
            try:
                notes = expand(part).notes
            except ParamError as err:
                raise SpecError.at(f'parts[0] (id="{part.id}").params.{err.field}', err.reason) from err
            r.assumptions.extend(f"{n} — not in the text" for n in notes)
