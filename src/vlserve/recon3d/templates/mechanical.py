"""Mechanical families: flange, impeller, bracket, enclosure box.

Every function returns primitives in the family's local frame (bounding box centred on the origin,
axis along z); the numbers it assumed go to ``ctx.notes``.
"""

from __future__ import annotations

import math

import numpy as np

from vlserve.recon3d.params import BracketParams, EnclosureBoxParams, FlangeParams, ImpellerParams
from vlserve.recon3d.spec import PrimitivePart
from vlserve.recon3d.templates.base import (
    OVERSHOOT,
    Ctx,
    ParamError,
    bore,
    bore_radius,
    box,
    cylinder,
    extrusion,
)

BLADE_SAMPLES = 24
TIP_ARC_POINTS = 3


def flange(p: FlangeParams, ctx: Ctx) -> list[PrimitivePart]:
    """Disc + optional raised hub − bore − circular pattern of bolt holes."""
    d = ctx.pick("diameter", p.diameter, ctx.mm(80), "default 80 mm")
    t = ctx.pick("thickness", p.thickness, 0.125 * d, "12.5 % of diameter")
    bore_size = ctx.pick("bore_size", p.bore_size, 0.25 * d, "25 % of diameter")
    count = ctx.pick_int("bolt_count", p.bolt_count, 6)
    bolt_d = ctx.pick("bolt_diameter", p.bolt_diameter, 0.1 * d, "10 % of diameter")
    bcd = ctx.pick("bolt_circle_diameter", p.bolt_circle_diameter, 0.75 * d, "75 % of diameter")
    hub_d = p.hub_diameter or 0.0
    hub_h = ctx.pick("hub_height", p.hub_height, t, "= thickness") if hub_d else 0.0
    height = t + hub_h
    inner = max(bore_radius(p.bore_shape, bore_size), hub_d / 2)

    if hub_d and hub_d >= d:
        raise ParamError("hub_diameter", f"must be < diameter ({d:g})")
    if bore_radius(p.bore_shape, bore_size) >= (hub_d / 2 if hub_d else d / 2) * 0.999:
        raise ParamError("bore_size", "the bore does not fit inside the flange" + (" hub" if hub_d else ""))
    if count:
        if bcd / 2 + bolt_d / 2 >= d / 2:
            raise ParamError(
                "bolt_circle_diameter",
                "bolt holes break through the rim (need bolt_circle_diameter + bolt_diameter < diameter)",
            )
        if bcd / 2 - bolt_d / 2 <= inner:
            raise ParamError(
                "bolt_circle_diameter", "bolt holes cut into the " + ("hub" if hub_d else "bore")
            )
        if count > 1 and bcd * math.sin(math.pi / count) <= bolt_d:
            raise ParamError("bolt_count", f"{count} holes of {bolt_d:g} overlap on a {bcd:g} circle")

    z_disc = -height / 2 + t / 2
    parts: list[PrimitivePart] = [cylinder("disc", d, t, (0, 0, z_disc))]
    if hub_d:
        parts.append(cylinder("hub", hub_d, height, (0, 0, 0)))
    cut = bore("bore", p.bore_shape, bore_size, height * (1 + 2 * OVERSHOOT))
    if cut is not None:
        parts.append(cut)
    if count:
        parts.append(
            cylinder(
                "bolt_holes",
                bolt_d,
                t * (1 + 2 * OVERSHOOT),
                (0, 0, z_disc),
                op="subtract",
                pattern={"kind": "circular", "count": count, "radius": bcd / 2},
            )
        )
    return parts


def blade_outline(
    r_root: float, r_hub: float, r_tip: float, thickness: float, curvature: float
) -> list[list[float]]:
    """(n, 2) outline of one blade: a strip of ``thickness`` around a spiral centre line, cut off
    exactly at the tip circle ``r_tip`` (so the impeller's diameter is what was asked for).

    The centre line runs radially from ``r_root`` (inside the hub) to ``r_hub``, then sweeps
    ``-curvature`` degrees linearly with radius out to ``r_tip`` (backward-curved for
    counter-clockwise rotation when ``curvature > 0``).
    """
    # run the centre line a little past the tip, then clip both edges at the tip circle
    r = np.linspace(r_root, r_tip + thickness, BLADE_SAMPLES)
    theta = -math.radians(curvature) * np.clip((r - r_hub) / (r_tip - r_hub), 0.0, None)
    centre = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    tangent = np.gradient(centre, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    right = _clip_at_radius(centre - normal * thickness / 2, r_tip)
    left = _clip_at_radius(centre + normal * thickness / 2, r_tip)
    a0, a1 = math.atan2(right[-1, 1], right[-1, 0]), math.atan2(left[-1, 1], left[-1, 0])
    cap = np.linspace(a0, a1, TIP_ARC_POINTS + 2)[1:-1]
    arc = np.column_stack([r_tip * np.cos(cap), r_tip * np.sin(cap)])
    outline: list[list[float]] = np.vstack([right, arc, left[::-1]]).tolist()
    return outline


def _clip_at_radius(line: np.ndarray, radius: float) -> np.ndarray:
    """The (k, 2) polyline up to where it first leaves the circle, ending exactly on it."""
    r = np.linalg.norm(line, axis=1)
    out = int(np.argmax(r > radius))  # first point outside (the line is built to end outside)
    a, b = line[out - 1], line[out]
    # solve |a + s (b - a)| = radius for s in [0, 1]
    d = b - a
    qa, qb, qc = d @ d, 2 * a @ d, a @ a - radius * radius
    s = (-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
    return np.vstack([line[:out], a + s * d])


def impeller(p: ImpellerParams, ctx: Ctx) -> list[PrimitivePart]:
    """Back plate + hub + circular pattern of curved blades − bore."""
    d = ctx.pick("diameter", p.diameter, ctx.mm(120), "default 120 mm")
    h = ctx.pick("height", p.height, 0.2 * d, "20 % of diameter")
    hub_d = ctx.pick("hub_diameter", p.hub_diameter, 0.25 * d, "25 % of diameter")
    count = ctx.pick_int("blade_count", p.blade_count, 6)
    blade_t = ctx.pick("blade_thickness", p.blade_thickness, 0.03 * d, "3 % of diameter")
    curvature = ctx.pick("curvature", p.curvature, 30.0, "default 30° backward sweep")
    plate = ctx.pick("back_plate_thickness", p.back_plate_thickness, 0.15 * h, "15 % of height")
    bore_size = ctx.pick("bore_size", p.bore_size, 0.4 * hub_d, "40 % of hub_diameter")

    if hub_d >= d:
        raise ParamError("hub_diameter", f"must be < diameter ({d:g})")
    if plate >= h:
        raise ParamError("back_plate_thickness", f"must be < height ({h:g}) to leave room for the blades")
    if blade_t >= (d - hub_d) / 2:
        raise ParamError("blade_thickness", "blades thicker than they are long")
    if p.bore_shape != "none" and bore_radius(p.bore_shape, bore_size) >= hub_d / 2 * 0.999:
        raise ParamError("bore_size", f"the bore does not fit inside the hub ({hub_d:g})")

    blade_h = h - plate
    parts: list[PrimitivePart] = []
    if plate > 0:
        parts.append(cylinder("back_plate", d, plate, (0, 0, -h / 2 + plate / 2)))
    parts.append(cylinder("hub", hub_d, h))
    outline = blade_outline(0.6 * hub_d / 2, hub_d / 2, d / 2, blade_t, curvature)
    parts.append(
        extrusion(
            "blades",
            outline,
            blade_h,
            (0, 0, h / 2 - blade_h / 2),
            pattern={"kind": "circular", "count": count, "radius": 0.0},
        )
    )
    cut = bore("bore", p.bore_shape, bore_size, h * (1 + 2 * OVERSHOOT))
    if cut is not None:
        parts.append(cut)
    return parts


def bracket(p: BracketParams, ctx: Ctx) -> list[PrimitivePart]:
    """L bracket: horizontal leg along +x, vertical leg along +z, optional gusset, holes in both legs."""
    length = ctx.pick("length", p.length, ctx.mm(60), "default 60 mm")
    height = ctx.pick("height", p.height, length, "= length")
    width = ctx.pick("width", p.width, length * 2 / 3, "2/3 of length")
    t = ctx.pick("thickness", p.thickness, 0.08 * length, "8 % of length")
    hole_d = ctx.pick("hole_diameter", p.hole_diameter, 0.1 * length, "10 % of length")
    holes = ctx.pick_int("holes_per_leg", p.holes_per_leg, 1)

    if t >= min(length, height):
        raise ParamError("thickness", "must be smaller than both legs")
    gusset = 0.4 * (min(length, height) - t) if p.gusset else 0.0
    free_h, free_v = length - t - gusset, height - t - gusset
    if holes and hole_d:
        if hole_d >= width * 0.999:
            raise ParamError("hole_diameter", f"must be < width ({width:g})")
        if hole_d * holes >= 0.999 * min(free_h, free_v):
            raise ParamError("holes_per_leg", "the holes do not fit on the legs")

    # Build with the corner at the origin, then shift so the bounding box is centred.
    cx, cz = length / 2, height / 2
    parts: list[PrimitivePart] = [
        box("base_leg", length, width, t, (length / 2 - cx, 0, t / 2 - cz)),
        box("upright_leg", t, width, height, (t / 2 - cx, 0, height / 2 - cz)),
    ]
    if gusset:
        # the triangle reaches halfway into both legs (same hypotenuse, so the same solid) rather
        # than touching them along a face that float rounding may open up
        g = t + gusset
        tri = [[t / 2, t / 2], [g + t / 2, t / 2], [t / 2, g + t / 2]]
        parts.append(extrusion("gusset", tri, t, (-cx, 0, -cz), rotation=[90, 0, 0]))
    if holes and hole_d:
        step_h, step_v = free_h / holes, free_v / holes
        parts.append(
            cylinder(
                "base_holes",
                hole_d,
                t * (1 + 2 * OVERSHOOT),
                (t + gusset + step_h / 2 - cx, 0, t / 2 - cz),
                op="subtract",
                pattern={"kind": "linear", "count": holes, "step": [step_h, 0, 0]},
            )
        )
        parts.append(
            cylinder(
                "upright_holes",
                hole_d,
                t * (1 + 2 * OVERSHOOT),
                (t / 2 - cx, 0, t + gusset + step_v / 2 - cz),
                op="subtract",
                rotation=[0, 90, 0],
                pattern={"kind": "linear", "count": holes, "step": [0, 0, step_v]},
            )
        )
    return parts


def enclosure_box(p: EnclosureBoxParams, ctx: Ctx) -> list[PrimitivePart]:
    """Outer box − inner box (open at the top unless ``open_top`` is false) − optional cable hole."""
    length = ctx.pick("length", p.length, ctx.mm(100), "default 100 mm")
    width = ctx.pick("width", p.width, 0.6 * length, "60 % of length")
    height = ctx.pick("height", p.height, 0.4 * length, "40 % of length")
    wall = ctx.pick(
        "wall_thickness", p.wall_thickness, min(ctx.mm(2), 0.1 * min(length, width, height)), "default 2 mm"
    )
    hole = p.cable_hole_diameter or 0.0

    if 2 * wall >= min(length, width, height) * 0.999:
        raise ParamError("wall_thickness", "walls leave no room inside")
    inner_h = height - wall if p.open_top else height - 2 * wall
    if hole and hole >= 0.999 * min(width - 2 * wall, inner_h):
        raise ParamError("cable_hole_diameter", "the hole is wider than the wall it goes through")

    parts: list[PrimitivePart] = [box("shell", length, width, height)]
    if p.open_top:
        over = wall * OVERSHOOT * 10
        parts.append(
            box(
                "cavity",
                length - 2 * wall,
                width - 2 * wall,
                inner_h + over,
                (0, 0, -height / 2 + wall + (inner_h + over) / 2),
                op="subtract",
            )
        )
    else:
        parts.append(box("cavity", length - 2 * wall, width - 2 * wall, inner_h, op="subtract"))
    if hole:
        z = -height / 2 + wall + inner_h / 2
        parts.append(
            cylinder(
                "cable_hole",
                hole,
                wall * (1 + 2 * OVERSHOOT * 10),
                (-length / 2 + wall / 2, 0, z),
                op="subtract",
                rotation=[0, 90, 0],
            )
        )
    return parts
