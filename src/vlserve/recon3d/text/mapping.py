"""Map a :class:`~vlserve.recon3d.text.reading.Reading` (roles, counts, flags) onto template parameters.

One small function per family decides which role feeds which parameter (``"80 mm flange"``: the
size next to the object's name is its diameter; ``"120 x 60 cm"`` next to a table is length ×
width). The draft is validated like any spec, and the template's own defaults are added to the
assumptions so the caller sees every number that did not come from the text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.spec import ObjectSpec, TemplateBase
from vlserve.recon3d.templates import ParamError, expand
from vlserve.recon3d.text.reading import APPROXIMATE, CONFIDENT, Reading
from vlserve.recon3d.validation import load_spec

Value = tuple[float, bool]
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


class _Draft:
    """Collects parameters with their confidence."""

    def __init__(self, reading: Reading) -> None:
        self.r = reading
        self.params: dict[str, Any] = {}
        self.confidence: dict[str, float] = {}

    def put(self, name: str, value: Value | None, transform: Callable[[float], float] = lambda v: v) -> bool:
        if value is None or name in self.params:
            return False
        self.params[name] = round(transform(value[0]), 6)
        self.confidence[name] = APPROXIMATE if value[1] else CONFIDENT
        return True

    def put_plain(self, name: str, value: Any, why: str | None = None) -> None:
        self.params[name] = value
        if why:
            self.r.assumptions.append(why)

    def count(self, name: str, key: str) -> None:
        if key in self.r.counts:
            self.params[name] = self.r.counts[key]
            self.confidence[name] = CONFIDENT

    def group(self) -> tuple[list[float], bool] | None:
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
    holes = r.counts.get("bolt", r.counts.get("hole"))
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
            d.put(name, (value, group[1]))
        r.assumptions.append("the size group was read as length × width × thickness")
    d.put("length", r.first("length", "main"))
    d.put("height", r.first("height"))
    d.put("width", r.first("width"))
    d.put("thickness", r.first("thickness"))
    d.put("hole_diameter", r.first("hole", "bolt"))
    holes = r.counts.get("hole", r.counts.get("bolt"))
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
            d.put(name, (value, group[1]))
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
        d.put("length", (top[0], group[1]))
        d.put("width", (top[1], group[1]))
        if len(values) > 2:
            d.put("height", (values[2], group[1]))
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
            d.put(name, (value, group[1]))
        if len(group[0]) > 2:
            r.dims.setdefault("height", []).insert(0, (group[0][2], group[1]))
    d.put("seat_width", r.first("width", "main"))
    d.put("seat_depth", r.first("depth"))
    d.put("seat_height", r.first("seat"))
    d.put("back_height", r.first("back"))
    total = r.first("height")
    if total and "back_height" not in d.params:
        seat = d.params.get("seat_height", min(450.0, 0.5 * total[0]))
        if total[0] > seat:
            d.put("back_height", total, lambda v: v - seat)
            r.assumptions.append(f"overall height {total[0]:g} mm read as seat height {seat:g} + backrest")
    d.put("seat_thickness", r.first("thickness"))
    d.put("leg_size", r.first("leg"))
    if "round_legs" in r.flags:
        d.params["leg_shape"] = "round"


def _shelf(d: _Draft) -> None:
    r = d.r
    group = d.group()
    if group:
        for name, value in zip(("width", "depth", "height"), group[0], strict=False):
            d.put(name, (value, group[1]))
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


def _primitive_parts(r: Reading) -> list[dict[str, Any]]:
    """Parts for the plain shapes: cylinder, tube, sphere, cube, cone (defaults noted)."""
    group = r.groups[0][0] if r.groups else []

    def get(value: tuple[float, bool] | None, default: float, name: str) -> float:
        if value is not None:
            return value[0]
        r.assumptions.append(f"{name} = {default:g} mm (default)")
        return default

    name = r.template
    if name == "sphere":
        return [
            {
                "id": "sphere",
                "shape": "sphere",
                "size": {"diameter": get(r.first("diameter", "main", "outer_diameter"), 50, "diameter")},
            }
        ]
    if name == "cube":
        xyz = (group + [0, 0, 0])[:3] if group else []
        if not xyz:
            edge = get(r.first("main", "length", "width"), 50, "edge")
            y_val, z_val = r.first("width"), r.first("height")
            xyz = [edge, y_val[0] if y_val else edge, z_val[0] if z_val else edge]
        xyz = [v if v else xyz[0] for v in xyz]
        return [{"id": "block", "shape": "box", "size": {"x": xyz[0], "y": xyz[1], "z": xyz[2]}}]
    diameter = get(
        r.first("diameter", "outer_diameter", "main") or ((group[0], False) if group else None),
        50,
        "diameter",
    )
    height = get(
        r.first("height", "length", "thickness") or ((group[1], False) if len(group) > 1 else None),
        diameter,
        "height",
    )
    if name == "cone":
        return [
            {
                "id": "cone",
                "shape": "cone",
                "size": {"bottom_diameter": diameter, "top_diameter": 0, "height": height},
            }
        ]
    parts: list[dict[str, Any]] = [
        {"id": "body", "shape": "cylinder", "size": {"diameter": diameter, "height": height}}
    ]
    if name == "tube":
        inner = r.first("bore", "hole")
        wall = r.first("wall", "thickness") if inner is None else None
        inner_d = inner[0] if inner else diameter - 2 * wall[0] if wall else 0.8 * diameter
        if inner is None and wall is None:
            r.assumptions.append(f"inner diameter = {inner_d:g} mm (80 % of the outer diameter)")
        parts.append(
            {
                "id": "inner",
                "shape": "cylinder",
                "size": {"diameter": inner_d, "height": height * 1.04},
                "op": "subtract",
            }
        )
    return parts


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
    else:
        parts = _primitive_parts(r)
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
    return TextDraft(spec=spec, template=template, assumptions=r.assumptions, reading=r)


def _add_template_notes(spec: ObjectSpec, r: Reading) -> None:
    for part in spec.parts:
        if isinstance(part, TemplateBase):
            try:
                notes = expand(part).notes
            except ParamError as err:
                raise SpecError.at(f'parts[0] (id="{part.id}").params.{err.field}', err.reason) from err
            r.assumptions.extend(f"{n} — not in the text" for n in notes)
