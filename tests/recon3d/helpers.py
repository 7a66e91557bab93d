"""Shared by the recon3d tests: reference specs, tiny spec builders, analytic formulas."""

from __future__ import annotations

import math
from typing import Any

REL = 0.005
"""Every geometric check: within 0.5 % (the default 96 segments keep faceting below 0.2 %)."""

FLANGE: dict[str, Any] = {
    "spec_version": "1.0",
    "name": "flange",
    "category": "mechanical",
    "units": "mm",
    "description": "80 mm flange, 10 mm thick, 20 mm hex bore, six 8 mm bolt holes on a 60 mm circle",
    "parts": [
        {"id": "disc", "shape": "cylinder", "size": {"diameter": 80, "height": 10}, "material": "steel"},
        {
            "id": "bore",
            "shape": "prism",
            "size": {"sides": 6, "across_flats": 20, "height": 10},
            "op": "subtract",
        },
        {
            "id": "bolt_holes",
            "shape": "cylinder",
            "size": {"diameter": 8, "height": 10},
            "op": "subtract",
            "pattern": {"kind": "circular", "count": 6, "radius": 30},
            "color": "#ff0000",
        },
    ],
}
FLANGE_VOLUME = math.pi * 40**2 * 10 - 6 * (10**2 * math.tan(math.pi / 6)) * 10 - 6 * math.pi * 4**2 * 10

#: one part of every primitive shape, every op, a pattern, a mirror, a rotation
MIXED: dict[str, Any] = {
    "name": "mixed",
    "parts": [
        {"id": "disc", "shape": "cylinder", "size": {"diameter": 80, "height": 10}},
        {
            "id": "bore",
            "shape": "prism",
            "size": {"sides": 6, "across_flats": 20, "height": 12},
            "op": "subtract",
        },
        {
            "id": "holes",
            "shape": "cylinder",
            "size": {"diameter": 8, "height": 12},
            "op": "subtract",
            "pattern": {"kind": "circular", "count": 6, "radius": 30},
        },
        {
            "id": "knob",
            "shape": "revolve",
            "size": {"profile": [[0, 0], [15, 0], [15, 5], [5, 12], [0, 12]]},
            "position": [0, 0, 5],
            "mirror": ["xy"],
        },
        {
            "id": "ring",
            "shape": "torus",
            "size": {"major_diameter": 70, "minor_diameter": 6},
            "position": [0, 0, 5],
        },
        {
            "id": "cone",
            "shape": "cone",
            "size": {"bottom_diameter": 10, "top_diameter": 4, "height": 20},
            "position": [30, 30, 0],
            "rotation": [30, 20, 0],
        },
        {"id": "ball", "shape": "sphere", "size": {"diameter": 12}, "position": [-30, -30, 5]},
        {
            "id": "fin",
            "shape": "extrude",
            "size": {"polygon": [[0, 0], [20, 0], [0, 15]], "height": 3},
            "position": [20, -10, 5],
            "rotation": [90, 0, 0],
        },
        {"id": "clip", "shape": "box", "size": {"x": 200, "y": 200, "z": 14}, "op": "intersect"},
    ],
}


def spec(*parts: dict[str, Any], units: str = "mm", name: str = "test") -> dict[str, Any]:
    """A spec dict around ``parts``."""
    return {"name": name, "units": units, "parts": list(parts)}


def part(id: str, shape: str, **fields: Any) -> dict[str, Any]:
    """A primitive part dict."""
    return {"id": id, "shape": shape, **fields}


def template(id: str, name: str, **params: Any) -> dict[str, Any]:
    """A template part dict."""
    return {"id": id, "shape": "template", "template": name, "params": params}


def polygon_area(points: list[list[float]]) -> float:
    """Shoelace area (absolute)."""
    n = len(points)
    return (
        abs(
            sum(
                points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                for i in range(n)
            )
        )
        / 2
    )
