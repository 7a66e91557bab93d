"""Reference objects of the refinement tests and ``bench/refine.py``: the true specs the photos are
rendered from (one definition, imported by both).

* ``BLOCK``: a 60×40×20 box with a Ø24 boss standing 16 high, its bottom hidden inside the box;
* ``FLANGE``: the flange template, Ø80×16, a Ø24 bore, six Ø10 bolt holes on a Ø58 circle;
* ``BRACKET``: the L-bracket template, 70 long, 50 high, 40 wide, 8 thick, Ø12 holes.
"""

from __future__ import annotations

import copy
from typing import Any

BLOCK: dict[str, Any] = {
    "spec_version": "1.0",
    "name": "block with boss",
    "parts": [
        {"id": "base", "shape": "box", "size": {"x": 60, "y": 40, "z": 20}},
        {"id": "boss", "shape": "cylinder", "size": {"diameter": 24, "height": 16}, "position": [8, 0, 18]},
    ],
}

FLANGE: dict[str, Any] = {
    "spec_version": "1.0",
    "name": "flange",
    "parts": [
        {
            "id": "f",
            "template": "flange",
            "params": {
                "diameter": 80,
                "thickness": 16,
                "bore_size": 24,
                "bolt_count": 6,
                "bolt_diameter": 10,
                "bolt_circle_diameter": 58,
            },
        }
    ],
}

BRACKET: dict[str, Any] = {
    "spec_version": "1.0",
    "name": "bracket",
    "parts": [
        {
            "id": "b",
            "template": "bracket",
            "params": {"length": 70, "height": 50, "width": 40, "thickness": 8, "hole_diameter": 12},
        }
    ],
}


def reference_objects() -> dict[str, dict[str, Any]]:
    """Fresh copies of the reference specs by name (callers may modify them)."""
    return {name: copy.deepcopy(spec) for name, spec in (("block", BLOCK), ("flange", FLANGE), ("bracket", BRACKET))}
