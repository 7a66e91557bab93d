"""The numeric parameters of a spec that refinement may change, with its topology fixed.

A spec's topology (which parts, shapes, ops, counts, templates) stays as written; its lengths
move. :func:`spec_parameters` lists them with stable names:

* ``<part id>.<field>``: a primitive's size (``disc.diameter``) or a template parameter
  (``f.bolt_circle_diameter``). Template parameters the spec left out are first set to the
  value the template would assume (from its notes), so they can be fitted too.
* ``<part id>.position.x|y|z``: where parts after the first sit (part 0 anchors the pose).
* ``<part id>.pattern.radius``, ``<part id>.pattern.step.x|y|z`` (non-zero steps only).
* ``<part id>.polygon.scale`` (extrude), ``<part id>.profile.r_scale|z_scale`` (revolve):
  outlines scale as a whole.

Counts, angles, integers and choices are never changed. :func:`apply_values` writes a vector of
values back into a copy of the spec dict.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal

from vlserve.recon3d.errors import part_path
from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.spec import MM_PER_UNIT, ObjectSpec, TemplateBase
from vlserve.recon3d.templates import expand
from vlserve.recon3d.validation import load_spec

Kind = Literal["length", "offset", "scale"]
#: template parameters that are not lengths (degrees)
NOT_LENGTHS = {"curvature", "pressure_angle"}
_NOTE = re.compile(r"^(?P<name>[a-z_]+) = (?P<value>[-+0-9.eE]+) ")


@dataclass(frozen=True)
class Param:
    """One fittable number: its name, where it lives in the spec dict, and its starting value."""

    name: str
    path: tuple[str | int, ...]
    value: float
    """in spec units (a factor 1.0 for ``scale``)"""
    kind: Kind
    assumed: bool = False
    """not written in the spec: the template's assumed value"""


def spec_parameters(spec: ObjectSpec | dict[str, Any], *, positions: bool = True) -> tuple[dict[str, Any], list[Param]]:
    """The spec as a dict with template defaults made explicit, and its fittable parameters."""
    model = load_spec(spec)
    data = model.model_dump(mode="json", exclude_none=True)
    params: list[Param] = []
    for i, part in enumerate(model.parts):
        pid = part.id
        entry = data["parts"][i]
        if isinstance(part, TemplateBase):
            assumed = _assumed_template_values(part, MM_PER_UNIT[model.units])
            for key, value in assumed.items():
                entry["params"][key] = value
            for key, value in entry["params"].items():
                if key in NOT_LENGTHS or isinstance(value, bool) or not isinstance(value, float | int):
                    continue
                field = type(part.params).model_fields.get(key)
                if field is None or field.annotation not in (float | None, float):
                    continue  # integer counts
                params.append(
                    Param(f"{pid}.{key}", ("parts", i, "params", key), float(value), "length", key in assumed)
                )
        else:
            for key, value in entry["size"].items():
                if key == "sides":
                    continue
                if key == "polygon":
                    params.append(Param(f"{pid}.polygon.scale", ("parts", i, "size", "polygon"), 1.0, "scale"))
                elif key == "profile":
                    params.append(Param(f"{pid}.profile.r_scale", ("parts", i, "size", "profile", "r"), 1.0, "scale"))
                    params.append(Param(f"{pid}.profile.z_scale", ("parts", i, "size", "profile", "z"), 1.0, "scale"))
                elif value > 0:
                    params.append(Param(f"{pid}.{key}", ("parts", i, "size", key), float(value), "length"))
        if positions and i > 0:
            for axis, value in zip("xyz", entry.get("position", [0.0, 0.0, 0.0]), strict=True):
                params.append(
                    Param(f"{pid}.position.{axis}", ("parts", i, "position", "xyz".index(axis)), float(value), "offset")
                )
        pattern = entry.get("pattern")
        if pattern and pattern["kind"] == "circular" and pattern.get("radius", 0) > 0:
            params.append(
                Param(f"{pid}.pattern.radius", ("parts", i, "pattern", "radius"), float(pattern["radius"]), "length")
            )
        if pattern and pattern["kind"] == "linear":
            for k, value in enumerate(pattern["step"]):
                if value != 0:
                    params.append(
                        Param(
                            f"{pid}.pattern.step.{'xyz'[k]}", ("parts", i, "pattern", "step", k), float(value), "offset"
                        )
                    )
    return data, params


def _assumed_template_values(part: TemplateBase, mm_per_unit: float) -> dict[str, float]:
    """Values a template would assume for the length parameters the spec left out."""
    missing = {k for k, v in part.params.model_dump().items() if v is None and k not in NOT_LENGTHS}
    out: dict[str, float] = {}
    for note in expand(part, mm_per_unit).notes:
        match = _NOTE.match(note)
        if match and match["name"] in missing:
            field = type(part.params).model_fields[match["name"]]
            if field.annotation in (float | None, float):
                out[match["name"]] = float(match["value"])
    return out


def apply_values(data: dict[str, Any], params: list[Param], values: list[float]) -> dict[str, Any]:
    """A copy of the spec dict ``data`` with each parameter set to its value."""
    out = copy.deepcopy(data)
    for p, value in zip(params, values, strict=True):
        if p.kind == "scale":
            part = out["parts"][p.path[1]]
            if p.path[3] == "polygon":
                part["size"]["polygon"] = [
                    [x * value, y * value] for x, y in data["parts"][p.path[1]]["size"]["polygon"]
                ]
            else:
                k = 0 if p.path[4] == "r" else 1
                for point, original in zip(
                    part["size"]["profile"], data["parts"][p.path[1]]["size"]["profile"], strict=True
                ):
                    point[k] = original[k] * value
            continue
        target: Any = out
        for key in p.path[:-1]:
            target = target[key]
        target[p.path[-1]] = float(value)
    return out


def parse_known_dimension(text: str, params: list[Param], units: str) -> tuple[Param, float]:
    """``"f.diameter=80"`` or ``"diameter=3.15in"`` → (parameter, value in spec units)."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip().lower()
    if not sep or not name or not raw:
        raise ScaleError(f"known dimension {text!r}: write PARAM=VALUE, e.g. f.diameter=80 or diameter=80mm")
    unit = next((u for u in ("mm", "cm", "in", "m") if raw.endswith(u)), None)
    try:
        value = float(raw[: -len(unit)] if unit else raw)
    except ValueError:
        raise ScaleError(f"known dimension {text!r}: {raw!r} is not a number") from None
    if not value > 0:
        raise ScaleError(f"known dimension {text!r}: must be > 0")
    if unit:
        value = value * MM_PER_UNIT[unit] / MM_PER_UNIT[units]
    lengths = [p for p in params if p.kind == "length"]
    matches = [p for p in lengths if p.name == name] or [p for p in lengths if p.name.split(".", 1)[1] == name]
    if len(matches) != 1:
        names = ", ".join(p.name for p in lengths)
        why = "is ambiguous" if matches else "is not a length of this spec"
        raise ScaleError(f"known dimension {name!r} {why}; one of: {names}", parameters=[p.name for p in lengths])
    return matches[0], value


def describe(param: Param, data: dict[str, Any]) -> str:
    """``parts[0] (id="f").params.diameter``: the parameter's place, as validation errors name it."""
    i = param.path[1]
    assert isinstance(i, int)
    return f"{part_path(i, data['parts'][i]['id'])}.{'.'.join(str(k) for k in param.path[2:])}"
