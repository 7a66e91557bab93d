"""Primitives as manifold3d solids, in the part's local frame (spec units).

manifold3d is imported lazily (``pip install 'vlserve[recon3d]'``); this module is only loaded by
the compiler.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlserve.recon3d import profiles
from vlserve.recon3d._deps import require
from vlserve.recon3d.errors import GeometryError
from vlserve.recon3d.spec import (
    BoxPart,
    ConePart,
    CylinderPart,
    ExtrudePart,
    PrimitivePart,
    PrismPart,
    RevolvePart,
    SpherePart,
    TorusPart,
)

AREA_RTOL = 1e-6


def manifold3d() -> Any:
    """The manifold3d module (clear error when the extra is missing)."""
    return require("manifold3d")


def primitive(part: PrimitivePart, segments: int, path: str) -> Any:
    """Build ``part`` centred on its local origin as a ``manifold3d.Manifold``."""
    m = manifold3d()
    M, CS = m.Manifold, m.CrossSection
    if isinstance(part, BoxPart):
        s = part.size
        return M.cube([s.x, s.y, s.z], center=True)
    if isinstance(part, CylinderPart):
        r = part.size.diameter / 2
        return M.cylinder(part.size.height, r, r, segments, center=True)
    if isinstance(part, ConePart):
        c = part.size
        return M.cylinder(c.height, c.bottom_diameter / 2, c.top_diameter / 2, segments, center=True)
    if isinstance(part, SpherePart):
        return CS([profiles.sphere_profile(part.size.diameter / 2, segments)]).revolve(segments)
    if isinstance(part, TorusPart):
        t = part.size
        return (
            CS.circle(t.minor_diameter / 2, segments).translate([t.major_diameter / 2, 0]).revolve(segments)
        )
    if isinstance(part, PrismPart):
        p = part.size
        outline = CS([profiles.regular_polygon(p.sides, p.across_flats)])
        return outline.extrude(p.height).translate([0, 0, -p.height / 2])
    if isinstance(part, ExtrudePart):
        e = part.size
        outline = cross_section(np.asarray(e.polygon, dtype=float), f"{path}.size.polygon")
        return outline.extrude(e.height).translate([0, 0, -e.height / 2])
    if isinstance(part, RevolvePart):
        outline = cross_section(np.asarray(part.size.profile, dtype=float), f"{path}.size.profile")
        return outline.revolve(segments)
    raise GeometryError.at(f"{path}.shape", f"unsupported shape {part.shape!r}")  # pragma: no cover


def cross_section(points: np.ndarray, path: str) -> Any:
    """(n, 2) polygon → ``CrossSection``; GeometryError for zero-area or self-intersecting input."""
    pts = profiles.ensure_ccw(profiles.dedupe(points))
    area = abs(profiles.signed_area(pts))
    scale = float(np.ptp(pts, axis=0).max()) if len(pts) else 0.0
    tol = AREA_RTOL * scale * scale
    cs = manifold3d().CrossSection([pts]) if len(pts) >= 3 else manifold3d().CrossSection()
    filled = float(cs.area())
    if filled <= tol and area <= tol:
        raise GeometryError.at(path, "the polygon has zero area")
    # With the positive fill rule a bow-tie keeps only one lobe: the areas then disagree.
    if abs(filled - area) > 1e-6 * max(filled, area):
        raise GeometryError.at(
            path, "the polygon crosses itself; list the vertices in order around the outline"
        )
    return cs
