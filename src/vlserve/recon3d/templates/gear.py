"""Involute spur gear: tooth outline maths and the ``spur_gear`` family."""

from __future__ import annotations

import math

import numpy as np

from vlserve.recon3d.params import SpurGearParams
from vlserve.recon3d.spec import PrimitivePart
from vlserve.recon3d.templates.base import OVERSHOOT, Ctx, ParamError, bore, bore_radius, extrusion

FLANK_POINTS = 8
ARC_POINTS = 4


def _inv(alpha: float) -> float:
    """The involute function tan α − α."""
    return math.tan(alpha) - alpha


def gear_outline(teeth: int, module: float, pressure_angle: float = 20.0) -> np.ndarray:
    """(n, 2) counter-clockwise outline of a standard full-depth involute spur gear.

    Pitch radius ``m·z/2``, addendum ``m``, dedendum ``1.25·m``; tooth thickness on the pitch
    circle is exactly half the circular pitch (``π·m/2``). Below the base circle the flank is
    radial; the root and tip are arcs. Tooth 0 is centred on +x.
    """
    alpha = math.radians(pressure_angle)
    rp = module * teeth / 2
    rb = rp * math.cos(alpha)
    ra = rp + module
    rf = rp - 1.25 * module

    def half_angle(r: float) -> float:
        # half the angular tooth thickness at radius r (involute flank)
        alpha_r = math.acos(min(1.0, rb / r))
        return math.pi / (2 * teeth) + _inv(alpha) - _inv(alpha_r)

    r_start = max(rb, rf)
    flank_r = r_start + (ra - r_start) * (
        1 - np.cos(np.linspace(0, math.pi / 2, FLANK_POINTS))
    )  # denser near the base
    flank_psi = np.array([half_angle(float(r)) for r in flank_r])
    psi_root = half_angle(r_start)
    psi_tip = float(flank_psi[-1])
    pitch = 2 * math.pi / teeth

    pts: list[tuple[float, float]] = []
    for k in range(teeth):
        c = k * pitch
        if rf < rb:
            pts.append((rf, c - psi_root))
        pts += [(float(r), c - float(s)) for r, s in zip(flank_r, flank_psi, strict=True)]
        pts += [(ra, a) for a in np.linspace(c - psi_tip, c + psi_tip, ARC_POINTS + 2)[1:-1]]
        pts += [(float(r), c + float(s)) for r, s in zip(flank_r[::-1], flank_psi[::-1], strict=True)]
        if rf < rb:
            pts.append((rf, c + psi_root))
        pts += [(rf, a) for a in np.linspace(c + psi_root, c + pitch - psi_root, ARC_POINTS + 2)[1:-1]]
    polar = np.asarray(pts)
    return np.column_stack([polar[:, 0] * np.cos(polar[:, 1]), polar[:, 0] * np.sin(polar[:, 1])])


def spur_gear(p: SpurGearParams, ctx: Ctx) -> list[PrimitivePart]:
    """Extruded involute outline − bore."""
    teeth = ctx.pick_int("teeth", p.teeth, 20)
    if p.outer_diameter is not None:
        module = p.outer_diameter / (teeth + 2)
        if p.module is not None and abs(module - p.module) > 1e-6 * module:
            ctx.notes.append(f"module = {module:.4g} from outer_diameter (given module {p.module:g} ignored)")
        else:
            ctx.notes.append(f"module = {module:.4g} (outer_diameter / (teeth + 2))")
    else:
        module = ctx.pick("module", p.module, ctx.mm(2), "default 2 mm")
    thickness = ctx.pick("thickness", p.thickness, 5 * module, "5 × module")
    pressure = ctx.pick("pressure_angle", p.pressure_angle, 20.0, "default 20°")
    pitch_d = module * teeth
    bore_size = ctx.pick("bore_size", p.bore_size, 0.25 * pitch_d, "25 % of pitch diameter")

    root_r = pitch_d / 2 - 1.25 * module
    if p.bore_shape != "none" and bore_radius(p.bore_shape, bore_size) >= 0.95 * root_r:
        raise ParamError("bore_size", f"the bore reaches the tooth roots (root diameter {2 * root_r:.4g})")
    outline = gear_outline(teeth, module, pressure).tolist()
    parts: list[PrimitivePart] = [extrusion("teeth", outline, thickness)]
    cut = bore("bore", p.bore_shape, bore_size, thickness * (1 + 2 * OVERSHOOT))
    if cut is not None:
        parts.append(cut)
    return parts
