"""Bench photo refinement: render known objects, perturb their specs, refine, compare with the truth.

    python bench/refine.py [--views 16,12,8,4] [--objects block,flange,bracket] [--jobs 3]
                           [--width 800 --height 600] [--closeness 1.0] [--cache DIR [--sfm-only]]

``--cache DIR`` keeps the renders and the SfM results (points, cameras, tracks; keyed by object,
size, closeness, seed, the views' indices and the feature count) so that a second run only finds
the marker and fits (seconds to a minute per row instead of minutes): the way to iterate on the
fit. ``--sfm-only`` fills the cache without fitting.

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
* photos registered, object points, seconds (SfM + fit; the fit alone when SfM came from the cache).

Goal (issue 14): with ≥ 16 views, refined dimensions within 2 % of truth and Chamfer ≥ 5×
lower than the perturbed spec. Needs the extras ``recon3d`` and ``refine``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pickle
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
from vlserve.recon3d.refine.errors import RefineError  # noqa: E402
from vlserve.recon3d.refine.fit import FitOptions  # noqa: E402
from vlserve.recon3d.refine.params import spec_parameters  # noqa: E402
from vlserve.recon3d.refine.pipeline import RefineOptions, refine_measured, unrefined_result  # noqa: E402
from vlserve.recon3d.refine.render import as_mesh, render_views, save_views  # noqa: E402
from vlserve.recon3d.refine.scale import WorldFrame, marker_frame  # noqa: E402
from vlserve.recon3d.refine.sfm import CameraView, SfmOptions, SfmResult, run_sfm  # noqa: E402
from vlserve.recon3d.validation import load_spec  # noqa: E402
from vlserve.testing.refine_objects import BLOCK, BRACKET, FLANGE  # noqa: E402

MARKER_MM = 40.0
RING = 16  # cameras rendered; fewer views are subsets of this ring, whichever --views are asked for
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
        BLOCK,
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
        FLANGE,
        [_field("f", k) for k in ("diameter", "thickness", "bore_size", "bolt_diameter", "bolt_circle_diameter")],
    ),
    "bracket": (
        BRACKET,
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


def _strip(sfm: SfmResult) -> SfmResult:
    """A picklable copy of an SfM result: arrays, names and cameras, without the reconstruction."""
    views = [CameraView(v.name, v.cam_from_world, v.camera) for v in sfm.views]
    return dataclasses.replace(sfm, views=views, reconstruction=None)


def render_cached(name: str, args: argparse.Namespace, root: Path, n_views: int) -> tuple[list[Path], float]:
    """The object's rendered photos (from ``--cache`` when there, keyed by object, size,
    closeness, seed and view count) and the seconds rendering took (0 when cached)."""
    truth, _ = OBJECTS[name]
    key = f"{name}-{args.width}x{args.height}-c{args.closeness:g}-s{args.seed}-n{n_views}"
    folder = (args.cache or root) / key
    done = folder / "cameras.npz"
    if args.cache and done.is_file():
        return sorted(folder.glob("view_*.png")), 0.0
    vertices, faces = as_mesh(compile_spec(truth))
    started = time.perf_counter()
    scene, rendered = render_views(
        vertices,
        faces,
        n_views,
        width=args.width,
        height=args.height,
        marker_size=MARKER_MM,
        seed=args.seed,
        closeness=args.closeness,
    )
    paths = save_views(rendered, folder)
    # the true cameras and marker: what diagnostics compare SfM and the marker scale with
    np.savez(
        done,
        cam_from_world=np.array([v.cam_from_world for v in rendered]),
        K=rendered[0].K,
        marker_center=np.array(scene.marker.center if scene.marker else (0.0, 0.0)),
    )
    return paths, time.perf_counter() - started


def measure_cached(
    paths: list[Path], args: argparse.Namespace, options: RefineOptions
) -> tuple[SfmResult | None, WorldFrame | None, RefineError | None, float]:
    """SfM (from ``--cache`` when there) and the marker frame of ``paths``, or the error. The
    marker is found afresh each run (seconds): only the slow SfM is kept."""
    key = f"sfm-f{args.features}-s{args.seed}-" + "-".join(p.stem.split("_")[-1] for p in paths) + ".pkl"
    file = paths[0].parent / key
    sfm: SfmResult | None = None
    error: RefineError | None = None
    seconds = 0.0
    if args.cache and file.is_file():
        with file.open("rb") as fh:
            sfm, error = pickle.load(fh)  # noqa: S301 — our own cache
    else:
        started = time.perf_counter()
        try:
            sfm = _strip(run_sfm(paths, options=options.sfm))
        except RefineError as err:
            error = err
        seconds = time.perf_counter() - started
        if args.cache:
            with file.open("wb") as fh:
                pickle.dump((sfm, error), fh)
    if sfm is None or error is not None:
        return sfm, None, error, seconds
    try:
        return sfm, marker_frame(sfm, MARKER_MM), None, seconds
    except RefineError as err:
        return sfm, None, err, seconds


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
    paths, render_s = render_cached(name, args, root, RING)
    c0, f1_0, f2_0 = surface_metrics(guess, truth)
    e0 = dim_errors(guess, truth, dims)
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    details: list[str] = []
    for n in views:
        subset = [paths[i] for i in SUBSETS.get(n, list(range(n)))]
        t = time.perf_counter()
        sfm, frame, error, sfm_s = measure_cached(subset, args, options)
        if args.sfm_only:
            _progress(args, f"{name} {n} views: SfM {sfm_s:.0f} s" + (f" ({error.message})" if error else ""))
            continue
        # what a job does: keep the spec, with the reason, when the photos cannot measure it
        if error is not None or sfm is None or frame is None:
            assert error is not None
            result = unrefined_result(load_spec(guess), subset, sfm, error, 0.0)
        else:
            result = refine_measured(guess, sfm, frame, options=options, on_failure="keep")
        seconds = sfm_s + time.perf_counter() - t
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
    cached = " (cached)" if not render_s else f" {render_s:.0f} s"
    lines.append(f"{'':<8} render {RING} views{cached}; perturbed: {before}")
    lines.extend(f"{'':<8} after {d}" for d in details)
    return lines, rows


def _progress(args: argparse.Namespace, line: str) -> None:
    # parallel runs print each row to stderr as it lands; the table on stdout comes at the end
    if args.jobs > 1 or args.sfm_only:
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
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep renders and SfM results in this folder (keyed by object, size, closeness, seed, views, "
        "features) and reuse them: a second run only fits",
    )
    parser.add_argument("--sfm-only", action="store_true", help="render and run SfM into --cache, no fit")
    args = parser.parse_args()
    views = [int(v) for v in args.views.split(",")]
    if unknown := [v for v in views if v not in SUBSETS]:
        parser.error(f"--views: {unknown} not among {sorted(SUBSETS)} (subsets of the {RING}-camera ring)")
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
        root = Path(tmp)
        if args.jobs > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                outcomes = list(pool.map(run_object, names, [args] * len(names), [root] * len(names)))
        else:
            outcomes = [run_object(name, args, root) for name in names]
        for lines, object_rows in outcomes:
            print("\n".join(lines), flush=True)
            rows.extend(object_rows)
    for n in [] if args.sfm_only else views:
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
