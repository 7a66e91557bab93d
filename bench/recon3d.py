"""Bench the spec → CAD compiler on reference specs.

    python bench/recon3d.py [--segments 96] [--repeats 3] [--samples 5000]

For each spec it prints:

* our mesh volume against the analytic volume (relative error);
* Chamfer distance, Hausdorff distance and F-score between our mesh and the tessellated build123d
  STEP solid (the same spec built independently with exact OCCT primitives and booleans). Points
  are sampled uniformly on each surface and their exact distance to the *other surface* is taken
  (not to the other sample set, which would only measure sample spacing); Chamfer = mean of the
  two mean distances, Hausdorff = the largest one, F-score at τ = 0.1 % of the bbox diagonal;
* watertightness, and the warm time of compile and of every export format (median of repeats;
  one-off import costs are printed separately).

Needs the ``recon3d`` and ``cad`` extras plus rtree (trimesh's point-to-surface queries).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PI = math.pi
TAU_FRACTION = 0.001


def _impeller_volume(
    d: float, h: float, hub: float, n: int, t: float, curvature: float, plate: float, bore: float
) -> float:
    r, rh = d / 2, hub / 2
    c = math.radians(curvature) / (r - rh)
    rr = np.linspace(rh, r, 4001)
    length = float(np.trapezoid(np.sqrt(1 + (rr * c) ** 2), rr))
    return (
        PI * r**2 * plate + PI * rh**2 * (h - plate) + n * t * length * (h - plate) - PI * (bore / 2) ** 2 * h
    )


def _gear_volume() -> float:
    from vlserve.recon3d.profiles import signed_area
    from vlserve.recon3d.templates.gear import gear_outline

    return signed_area(gear_outline(24, 2.0, 20.0)) * 12 - PI * 6**2 * 12


SPECS: list[tuple[str, dict[str, Any], Callable[[], float]]] = [
    (
        "flange (issue example)",
        {
            "name": "flange",
            "parts": [
                {"id": "disc", "shape": "cylinder", "size": {"diameter": 80, "height": 10}},
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
                },
            ],
        },
        lambda: PI * 1600 * 10 - 6 * 100 * math.tan(PI / 6) * 10 - 6 * PI * 16 * 10,
    ),
    (
        "impeller (template)",
        {
            "name": "impeller",
            "parts": [
                {
                    "id": "imp",
                    "template": "impeller",
                    "params": {
                        "diameter": 200,
                        "height": 40,
                        "hub_diameter": 50,
                        "blade_count": 5,
                        "blade_thickness": 4,
                        "curvature": 30,
                        "back_plate_thickness": 6,
                        "bore_size": 20,
                    },
                }
            ],
        },
        lambda: _impeller_volume(200, 40, 50, 5, 4, 30, 6, 20),
    ),
    (
        "spur gear 24T m2",
        {
            "name": "gear",
            "parts": [
                {
                    "id": "g",
                    "template": "spur_gear",
                    "params": {"teeth": 24, "module": 2, "thickness": 12, "bore_size": 12},
                }
            ],
        },
        _gear_volume,
    ),
    (
        "chair",
        {
            "name": "chair",
            "parts": [
                {
                    "id": "c",
                    "template": "chair",
                    "params": {
                        "seat_width": 450,
                        "seat_depth": 420,
                        "seat_height": 460,
                        "seat_thickness": 30,
                        "back_height": 400,
                        "back_thickness": 25,
                        "leg_size": 35,
                    },
                }
            ],
        },
        lambda: 450 * 420 * 30 + 4 * 35 * 35 * 430 + 450 * 25 * 400,
    ),
    (
        "table (cm, round legs)",
        {
            "name": "table",
            "units": "cm",
            "parts": [
                {
                    "id": "t",
                    "template": "table",
                    "params": {
                        "length": 120,
                        "width": 60,
                        "height": 75,
                        "top_thickness": 3,
                        "leg_size": 5,
                        "leg_shape": "round",
                    },
                }
            ],
        },
        lambda: (120 * 60 * 3 + 4 * PI * 2.5**2 * 72) * 1000,
    ),
    (
        "box with holes",
        {
            "name": "box with holes",
            "parts": [
                {
                    "id": "box",
                    "template": "enclosure_box",
                    "params": {
                        "length": 100,
                        "width": 60,
                        "height": 40,
                        "wall_thickness": 2,
                        "cable_hole_diameter": 10,
                    },
                },
                {
                    "id": "vents",
                    "shape": "cylinder",
                    "size": {"diameter": 5, "height": 10},
                    "op": "subtract",
                    "position": [-30, 0, -20],
                    "pattern": {"kind": "linear", "count": 5, "step": [15, 0, 0]},
                },
            ],
        },
        lambda: 100 * 60 * 40 - 96 * 56 * 38 - PI * 25 * 2 - 5 * PI * 6.25 * 2,
    ),
    (
        "shelf",
        {
            "name": "shelf",
            "parts": [
                {
                    "id": "s",
                    "template": "shelf",
                    "params": {
                        "width": 800,
                        "depth": 300,
                        "height": 1800,
                        "shelf_count": 5,
                        "board_thickness": 18,
                        "back_thickness": 5,
                    },
                }
            ],
        },
        lambda: 2 * 18 * 300 * 1800 + 5 * 764 * 295 * 18 + 764 * 5 * 1800,
    ),
    (
        "bracket + gusset",
        {
            "name": "bracket",
            "parts": [
                {
                    "id": "b",
                    "template": "bracket",
                    "params": {
                        "length": 60,
                        "height": 50,
                        "width": 40,
                        "thickness": 5,
                        "hole_diameter": 6,
                        "holes_per_leg": 1,
                        "gusset": True,
                    },
                }
            ],
        },
        lambda: 40 * 5 * 105 - 2 * PI * 9 * 5 + (0.4 * 45) ** 2 / 2 * 5,
    ),
    (
        "knob (sphere, torus, cone, revolve)",
        {
            "name": "knob",
            "parts": [
                {
                    "id": "base",
                    "shape": "revolve",
                    "size": {"profile": [[0, 0], [20, 0], [20, 6], [12, 14], [0, 14]]},
                },
                {
                    "id": "grip",
                    "shape": "torus",
                    "size": {"major_diameter": 40, "minor_diameter": 6},
                    "position": [0, 0, 3],
                },
                {"id": "cap", "shape": "sphere", "size": {"diameter": 24}, "position": [0, 0, 14]},
                {
                    "id": "cut",
                    "shape": "box",
                    "size": {"x": 60, "y": 60, "z": 30},
                    "position": [0, 0, 21],
                    "op": "intersect",
                },
                {
                    "id": "shaft",
                    "shape": "cone",
                    "size": {"bottom_diameter": 6, "top_diameter": 5, "height": 10},
                    "position": [0, 0, 4],
                    "op": "subtract",
                },
            ],
        },
        lambda: float("nan"),
    ),
]


def surface_distances(a: Any, b: Any, n: int) -> tuple[float, float, float]:
    """Chamfer (mean), Hausdorff (max) and F-score at ``tau`` between trimesh surfaces ``a`` and ``b``."""
    import trimesh

    diag = float(np.linalg.norm(a.extents))
    pa, _ = trimesh.sample.sample_surface(a, n, seed=1)
    pb, _ = trimesh.sample.sample_surface(b, n, seed=2)
    _, d_ab, _ = trimesh.proximity.closest_point(b, pa)
    _, d_ba, _ = trimesh.proximity.closest_point(a, pb)
    tau = TAU_FRACTION * diag
    precision, recall = float((d_ab < tau).mean()), float((d_ba < tau).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(d_ab.mean() + d_ba.mean()) / 2, float(max(d_ab.max(), d_ba.max())), f


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()

    imports = {}
    for module in ("vlserve.recon3d.compiler", "build123d", "matplotlib.figure"):
        start = time.perf_counter()
        __import__(module)
        imports[module] = time.perf_counter() - start
    from vlserve.recon3d import compile_spec, export_files
    from vlserve.recon3d.exporters import FORMATS
    from vlserve.recon3d.exporters.step import build_shape

    print(
        f"recon3d bench — segments {args.segments}, median of {args.repeats} warm runs, "
        f"{args.samples} surface samples per side, F-score τ = {TAU_FRACTION:.1%} of bbox diagonal; "
        "'STEP vol' = our mesh vs the B-rep"
    )
    print("one-off imports: " + ", ".join(f"{k} {v:.2f}s" for k, v in imports.items()))
    compile_spec(SPECS[0][1], segments=args.segments)  # warm-up (first-call allocations)

    header = (
        f"{'spec':<36} {'volume mm³':>14} {'analytic':>14} {'rel.err':>9} {'STEP vol':>9} "
        f"{'chamfer mm':>10} {'hausdorff':>9} {'F@τ':>6} {'wt':>3} {'tris':>7}"
    )
    rows, timing_rows = [header, "-" * len(header)], []
    with tempfile.TemporaryDirectory() as tmp:
        for title, spec, analytic in SPECS:
            times: dict[str, list[float]] = {f: [] for f in ("compile", *FORMATS)}
            for r in range(args.repeats):
                start = time.perf_counter()
                model = compile_spec(spec, segments=args.segments)
                times["compile"].append(time.perf_counter() - start)
                for item in export_files(model, Path(tmp) / f"{r}", FORMATS):
                    times[item.format].append(item.seconds)
            expected = analytic()
            rel = (model.volume - expected) / expected if math.isfinite(expected) else float("nan")
            shape = build_shape(model.plan)
            diag = float(np.linalg.norm(model.extents))
            verts, tris = shape.tessellate(diag * 1e-4, 0.05)
            step_mesh = trimesh.Trimesh(np.array([(v.X, v.Y, v.Z) for v in verts]), np.asarray(tris))
            ours = trimesh.Trimesh(model.vertices, model.faces, process=False)
            chamfer, hausdorff, fscore = surface_distances(ours, step_mesh, args.samples)
            step_rel = (model.volume - shape.volume) / shape.volume
            rows.append(
                f"{title:<36} {model.volume:>14.1f} {expected:>14.1f} {rel:>+9.3%} {step_rel:>+9.3%} "
                f"{chamfer:>10.5f} {hausdorff:>9.4f} {fscore:>6.3f} {'yes' if model.watertight else 'NO':>3} "
                f"{len(model.faces):>7}"
            )
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}
            timing_rows.append((title, med))
    print("\n".join(rows))
    print()
    cols = ("compile", *FORMATS)
    print(f"{'time (ms)':<36} " + " ".join(f"{c:>7}" for c in cols) + f" {'total':>7} {'w/o step':>8}")
    for title, med in timing_rows:
        total = sum(med[c] for c in cols)
        print(
            f"{title:<36} "
            + " ".join(f"{med[c]:>7.1f}" for c in cols)
            + f" {total:>7.1f} {total - med['step']:>8.1f}"
        )


if __name__ == "__main__":
    main()
