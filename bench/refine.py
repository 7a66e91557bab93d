"""Bench photo refinement: render known objects, perturb their specs, refine, compare with the truth.

    python bench/refine.py [--views 16,12,8,4] [--objects block,flange,bracket] [--jobs 3]
                           [--width 800 --height 600] [--closeness 1.0]

For each object a true spec is compiled and ray-cast (``vlserve.recon3d.refine.render``: solid
noise texture, textured table, a 40 mm ArUco marker beside it) from 16 cameras on two rings
(30° and 40° elevation), framed as a phone capture would be (object and marker fill the frame,
800×600); fewer views are subsets of the ring (12: every fourth dropped, 8: every second, 4:
every fourth — 45° and 90° apart). Every length of the spec is multiplied by 1 ± U(10 %, 30 %)
(random sign, one fixed-seed generator per object), standing in for a model's guesses.
:func:`refine` then runs the real path — pycolmap SfM, marker scale, fit — with
``on_failure="keep"`` (a row says "not refined" and why), and the bench prints per object and
view count:

* the dimension error before → after (mean and worst over the object's visible dimensions,
  relative to the truth);
* Chamfer distance (mean of both directions, mm) and F-score at τ = 1 % and 2 % of the object's
  bbox diagonal, of the perturbed and of the refined spec against the truth (surfaces sampled
  with 20 000 points, both in the spec's own frame), and the Chamfer ratio perturbed/refined;
* photos registered, object points, seconds (SfM + fit).

Goal (issue 14): with ≥ 16 views, refined dimensions within 2 % of truth and Chamfer ≥ 5×
lower than the perturbed spec. Needs the extras ``recon3d`` and ``refine``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vlserve.recon3d import compile_spec  # noqa: E402
from vlserve.recon3d.refine.fit import FitOptions  # noqa: E402
from vlserve.recon3d.refine.params import spec_parameters  # noqa: E402
from vlserve.recon3d.refine.pipeline import RefineOptions, refine  # noqa: E402
from vlserve.recon3d.refine.render import as_mesh, render_views, save_views  # noqa: E402
from vlserve.recon3d.refine.sfm import SfmOptions  # noqa: E402

MARKER_MM = 40.0
SUBSETS = {16: list(range(16)), 12: [i for i in range(16) if i % 4 != 3], 8: list(range(0, 16, 2)), 4: [0, 4, 8, 12]}

Dim = tuple[str, Callable[[dict[str, Any]], float]]


def _get(spec: dict[str, Any], pid: str, key: str) -> float:
    part = next(p for p in spec["parts"] if p["id"] == pid)
    return float((part.get("size") or part["params"])[key])


def _field(pid: str, key: str) -> Dim:
    return f"{pid}.{key}", lambda s: _get(s, pid, key)


def _boss_top(spec: dict[str, Any]) -> float:
    boss = next(p for p in spec["parts"] if p["id"] == "boss")
    return float(boss["position"][2] + boss["size"]["height"] / 2)


OBJECTS: dict[str, tuple[dict[str, Any], list[Dim]]] = {
    "block": (
        {
            "spec_version": "1.0",
            "name": "block with boss",
            "parts": [
                {"id": "base", "shape": "box", "size": {"x": 60, "y": 40, "z": 20}},
                {"id": "boss", "shape": "cylinder", "size": {"diameter": 24, "height": 16}, "position": [8, 0, 18]},
            ],
        },
        # the boss's bottom is hidden inside the block: its top is what the photos measure
        [
            _field("base", "x"),
            _field("base", "y"),
            _field("base", "z"),
            _field("boss", "diameter"),
            ("boss top", _boss_top),
        ],
    ),
    "flange": (
        {
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
        },
        [_field("f", k) for k in ("diameter", "thickness", "bore_size", "bolt_diameter", "bolt_circle_diameter")],
    ),
    "bracket": (
        {
            "spec_version": "1.0",
            "name": "bracket",
            "parts": [
                {
                    "id": "b",
                    "template": "bracket",
                    "params": {"length": 70, "height": 50, "width": 40, "thickness": 8, "hole_diameter": 12},
                }
            ],
        },
        [_field("b", k) for k in ("length", "height", "width", "thickness", "hole_diameter")],
    ),
}


def perturb(spec: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Every length × (1 ± U(0.10, 0.30)), random sign; retried until the spec still compiles."""
    data, params = spec_parameters(spec, positions=False)
    for _ in range(50):
        out = copy.deepcopy(data)
        for p in params:
            if p.kind != "length" or p.assumed:
                continue
            factor = 1 + rng.choice([-1, 1]) * rng.uniform(0.10, 0.30)
            target: Any = out
            for key in p.path[:-1]:
                target = target[key]
            target[p.path[-1]] = round(p.value * factor, 2)
        try:
            compile_spec(out)
        except Exception:  # noqa: BLE001 — an impossible combination: draw again
            continue
        return out
    raise RuntimeError("no valid perturbation found")


def surface_metrics(spec: dict[str, Any], truth: dict[str, Any], n: int = 20000) -> tuple[float, float, float]:
    """Chamfer (mm) and F-score at 1 % and 2 % of the truth's bbox diagonal."""
    from scipy.spatial import cKDTree

    a_model, b_model = compile_spec(spec), compile_spec(truth)
    a = a_model.to_trimesh().sample(n)
    b = b_model.to_trimesh().sample(n)
    d_ab = cKDTree(b).query(a)[0]
    d_ba = cKDTree(a).query(b)[0]
    diag = float(np.linalg.norm(b_model.extents))
    chamfer = float((d_ab.mean() + d_ba.mean()) / 2)

    def fscore(tau: float) -> float:
        precision, recall = float((d_ab < tau).mean()), float((d_ba < tau).mean())
        return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)

    return chamfer, fscore(0.01 * diag), fscore(0.02 * diag)


def dim_errors(spec: dict[str, Any], truth: dict[str, Any], dims: list[Dim]) -> list[float]:
    return [abs(f(spec) / f(truth) - 1) for _, f in dims]


def run_object(name: str, args: argparse.Namespace, root: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Render one object, refine its perturbed spec at each view count: its table lines and rows."""
    views = [int(v) for v in args.views.split(",")]
    options = RefineOptions(
        sfm=SfmOptions(max_features=args.features, seed=args.seed),
        fit=FitOptions(seconds=args.fit_seconds, max_evaluations=args.fit_evaluations),
    )
    truth, dims = OBJECTS[name]
    # one generator per object: its perturbation does not depend on which others run
    guess = perturb(truth, np.random.default_rng([args.seed, list(OBJECTS).index(name)]))
    vertices, faces = as_mesh(compile_spec(truth))
    started = time.perf_counter()
    _, rendered = render_views(
        vertices,
        faces,
        max(views),
        width=args.width,
        height=args.height,
        marker_size=MARKER_MM,
        seed=args.seed,
        closeness=args.closeness,
    )
    render_s = time.perf_counter() - started
    paths = save_views(rendered, root / name)
    c0, f1_0, f2_0 = surface_metrics(guess, truth)
    e0 = dim_errors(guess, truth, dims)
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    details: list[str] = []
    for n in views:
        subset = [paths[i] for i in SUBSETS.get(n, list(range(n)))]
        t = time.perf_counter()
        # what a job does: keep the spec, with the reason, when the photos cannot measure it
        result = refine(guess, subset, marker_size_mm=MARKER_MM, options=options, on_failure="keep")
        seconds = time.perf_counter() - t
        if not result.refined:
            lines.append(f"{name:<8} {n:>5}   not refined ({seconds:.0f} s): {(result.reason or '')[:100]}")
            rows.append({"object": name, "views": n, "ok": False})
            _progress(args, lines[-1])
            continue
        assert result.sfm is not None
        c1, f1_1, f2_1 = surface_metrics(result.spec, truth)
        e1 = dim_errors(result.spec, truth, dims)
        reg = f"{len(result.sfm.views)}/{n}"
        lines.append(
            f"{name:<8} {n:>5} {reg:>5} {result.report['object_points']:>5} "
            f"{100 * np.mean(e0):>6.1f}→{100 * np.mean(e1):>5.2f} % "
            f"{100 * max(e0):>6.1f}→{100 * max(e1):>5.2f} % "
            f"{c0:>6.3f}→{c1:>6.3f} {c0 / max(c1, 1e-9):>6.1f} "
            f"{f1_0:>4.2f}→{f1_1:>4.2f} {f2_0:>4.2f}→{f2_1:>4.2f} {seconds:>7.1f}"
        )
        rows.append({"object": name, "views": n, "ok": True, "max_err": max(e1), "ratio": c0 / max(c1, 1e-9)})
        _progress(args, lines[-1])
        details.append(
            f"{n} views: " + ", ".join(f"{label} {100 * (f(result.spec) / f(truth) - 1):+.2f} %" for label, f in dims)
        )
    before = ", ".join(f"{label} {100 * (f(guess) / f(truth) - 1):+.1f} %" for label, f in dims)
    lines.append(f"{'':<8} render {max(views)} views {render_s:.0f} s; perturbed: {before}")
    lines.extend(f"{'':<8} after {d}" for d in details)
    return lines, rows


def _progress(args: argparse.Namespace, line: str) -> None:
    # parallel runs print each row to stderr as it lands; the table on stdout comes at the end
    if args.jobs > 1:
        print(line, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", default="16,12,8,4")
    parser.add_argument("--objects", default=",".join(OBJECTS))
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--closeness", type=float, default=1.0, help="camera distance factor (smaller: closer)")
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--fit-seconds", type=float, default=900.0, help="fit time limit (a loaded machine needs more)")
    parser.add_argument("--fit-evaluations", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=1, help="objects refined in parallel processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the renders in this folder")
    args = parser.parse_args()
    views = [int(v) for v in args.views.split(",")]
    names = args.objects.split(",")
    print(
        f"refine bench — {args.width}x{args.height} renders, {MARKER_MM:g} mm ArUco marker, lengths perturbed "
        f"±10–30 %, F at τ = 1 %/2 % of the bbox diagonal, Chamfer in mm (perturbed → refined)"
    )
    header = (
        f"{'object':<8} {'views':>5} {'reg':>5} {'pts':>5} {'dim err mean':>15} {'dim err max':>15} "
        f"{'chamfer mm':>15} {'ratio':>6} {'F@1%':>11} {'F@2%':>11} {'time s':>7}"
    )
    print(header)
    print("-" * len(header), flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vlserve-refine-bench-") as tmp:
        root = args.keep or Path(tmp)
        if args.jobs > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                outcomes = list(pool.map(run_object, names, [args] * len(names), [root] * len(names)))
        else:
            outcomes = [run_object(name, args, root) for name in names]
        for lines, object_rows in outcomes:
            print("\n".join(lines), flush=True)
            rows.extend(object_rows)
    for n in views:
        done = [r for r in rows if r["views"] == n]
        ok = [r for r in done if r["ok"]]
        dims_ok = sum(1 for r in ok if r["max_err"] <= 0.02)
        chamfer_ok = sum(1 for r in ok if r["ratio"] >= 5)
        print(
            f"{n:>2} views: {len(ok)}/{len(done)} refined; every dimension within 2 %: {dims_ok}/{len(done)}; "
            f"Chamfer ≥ 5× lower: {chamfer_ok}/{len(done)}"
        )


if __name__ == "__main__":
    main()
