"""Fit a spec to the object's points: pose (and scale) first, then every numeric parameter.

Unknowns, all solved by ``scipy.optimize.least_squares`` (trust region, soft-L1 robust loss):

* the pose of the model in the world: a rotation vector, a translation, and — when the points
  are not metric (no marker) — a log scale;
* the spec's parameters (:mod:`.params`) with its topology fixed: lengths as log factors
  (``value = start · e^u``, bounded to ``[1/(1+c), 1+c]`` times the start), positions as offsets
  in units of the object's size, outline scales as log factors.

Each residual evaluation rebuilds the mesh with the compiler (cached per parameter vector, so
the pose columns of the finite-difference Jacobian reuse it) and measures the exact distance of
every point to the surface (:mod:`.distance`). When the ground is known, one more residual
pulls the model's lowest point onto it (the underside is never seen, the contact is).

Start: the model stands upright on the ground, centred under the points, at ``yaw_starts``
headings; a pose-only fit from each, and the best one starts the full fit. Bounded: at most
``max_points`` points, ``max_evaluations`` evaluations and ``seconds`` seconds (the best vector
found so far is kept when a limit stops the fit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.compiler import compile_spec
from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.distance import MeshDistance, surface_samples
from vlserve.recon3d.refine.params import Param, apply_values, describe, spec_parameters
from vlserve.recon3d.refine.sightlines import Sightlines, penetration_depths, ray_caster
from vlserve.recon3d.spec import MM_PER_UNIT, ObjectSpec


@dataclass(frozen=True)
class FitOptions:
    """Bounds and knobs of the fit."""

    segments: int = 64
    """circle segments while fitting (the refined spec is compiled at full resolution afterwards)"""
    max_points: int = 1000
    seconds: float = 90.0
    max_evaluations: int = 600
    yaw_starts: int = 8
    max_change: float = 0.6
    """a length may become at most (1 + max_change) times larger or smaller"""
    positions: bool = True
    ground_contact: bool = True
    seed: int = 0
    max_primitives: int = 300
    max_triangles: int = 150_000
    """a spec bigger than this (at ``segments``) is refused: every evaluation rebuilds it"""
    feature_search: bool = True
    """search the parameters that do not move the bounding box (holes, bores) globally"""
    max_sightlines: int = 1000
    """camera → point sight lines checked for free space at each evaluation (beyond: a random
    subset of the points, each with all its sight lines)"""
    sightline_margin: float = 0.01
    """the last this much (share of the object's size) of a sight line is not checked: its
    point lies on the surface, within noise"""
    measured_noise: bool = True
    """the last stage's loss scale from the points' own noise (:func:`_measured_noise`), not
    the fixed 0.4 % of the object's size"""
    final_loss: str = "cauchy"
    """robust loss of the last stage and the feature search (``soft_l1`` before): Cauchy's
    influence falls off beyond the noise scale, so points SfM puts a few millimetres off the
    surface (at a hole's rim, where a feature mixes the top face and the wall below) stop pulling
    the hole shut; soft-L1's stays constant"""


@dataclass(frozen=True)
class Pose:
    """``x_world = scale · R x_model + translation`` (model in mm)."""

    rotation: NDArray[np.float64]
    translation: NDArray[np.float64]
    scale: float

    def apply(self, model_points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, 3) model points (mm) → world."""
        return np.asarray(self.scale * model_points @ self.rotation.T + self.translation)

    def inverse(self, world_points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, 3) world points → model frame (mm)."""
        return np.asarray((world_points - self.translation) @ self.rotation / self.scale)


@dataclass(frozen=True)
class FittedParam:
    """One parameter before and after the fit (spec units)."""

    name: str
    place: str
    before: float
    after: float
    kind: str
    assumed: bool
    fixed: bool
    observed: bool
    together: tuple[str, ...] = ()
    """parameters the photos fix only in combination with this one (:func:`_entangled`): the
    split between them is the spec's, not a measurement"""

    @property
    def change(self) -> float:
        """Relative change (lengths and scales) or absolute change (offsets)."""
        if self.kind == "offset" or self.before == 0:
            return self.after - self.before
        return self.after / self.before - 1.0


@dataclass
class FitResult:
    """The refined spec (dict), its parameters before/after, the pose and the residuals."""

    spec: dict[str, Any]
    params: list[FittedParam]
    pose: Pose
    residuals_before: dict[str, float]
    residuals_after: dict[str, float]
    evaluations: int
    seconds: float
    stopped: str
    notes: list[str] = field(default_factory=list)


class _Stop(Exception):
    pass


def robust_rho(z: NDArray[np.float64], loss: str, exact: slice | None = None) -> NDArray[np.float64]:
    """(3, m): scipy's robust loss ``ρ(z)`` (``soft_l1`` or ``cauchy``) and its first two
    derivatives at ``z = (r / f_scale)²``; the rows in ``exact`` are plain squares (ρ = z).

    The ground contact is one residual weighted √n: through a robust loss, once the model's
    lowest point was off the ground by more than f_scale / √n (hundredths of a millimetre) it
    counted as an outlier, no stronger than one point, and the model could float or sink. A
    constraint is not an observation: it keeps its quadratic cost."""
    z = np.asarray(z, dtype=np.float64)
    if loss == "cauchy":
        rho = np.stack([np.log1p(z), 1 / (1 + z), -1 / (1 + z) ** 2])
    else:
        t = 1 + z
        rho = np.stack([2 * (np.sqrt(t) - 1), t**-0.5, -0.5 * t**-1.5])
    if exact is not None:
        rho[0, exact], rho[1, exact], rho[2, exact] = z[exact], 1.0, 0.0
    return rho


def robust_cost(r: NDArray[np.float64], f_scale: float, loss: str, exact: slice | None = None) -> float:
    """scipy's robust cost of residuals ``r`` (``soft_l1`` or ``cauchy``), in units of ``f_scale²``
    (the rows in ``exact`` squared, as :func:`robust_rho`)."""
    return float(robust_rho((r / f_scale) ** 2, loss, exact)[0].sum())


def residual_stats(d: NDArray[np.float64], inlier: float) -> dict[str, float]:
    """Median, mean, RMS, 90th percentile of distances and the share below ``inlier``."""
    return {
        "median": float(np.median(d)),
        "mean": float(d.mean()),
        "rms": float(np.sqrt((d**2).mean())),
        "p90": float(np.percentile(d, 90)),
        "inlier_share": float((d < inlier).mean()),
    }


@dataclass(frozen=True)
class _Built:
    """One compiled parameter vector: what the residuals need of its mesh (model frame, mm)."""

    vertices: NDArray[np.float64]
    distance: MeshDistance
    samples: NDArray[np.float64]
    """(s, 3) area samples of the upward-facing surfaces"""
    weights: NDArray[np.float64]
    """(s,) area of each sample / total visible area"""
    bins: NDArray[np.int64]
    """(s,) coverage residual each sample belongs to (plan leaf × facing direction)"""
    caster: Any = None
    """ray intersector for the free-space term (None without sight lines)"""
    normals: Any = None
    """(m, 3) outward face normals"""


class _Problem:
    """The residual function over ``[pose..., u...]`` with a mesh cache and limits.

    Residuals: (1) every point's distance to the surface; (2) coverage: per plan leaf, the
    area-weighted distance from the model's upward faces to the nearest observed point,
    less a tolerance of the points' spacing — without it a model too large would not shrink
    (points inside it are close to *some* face); (3) ground contact.
    """

    def __init__(
        self,
        data: dict[str, Any],
        params: list[Param],
        free: list[Param],
        fixed: dict[str, float],
        points: NDArray[np.float64],
        all_points: NDArray[np.float64],
        support: NDArray[np.float64],
        *,
        metric: bool,
        ground: bool,
        options: FitOptions,
        sightlines: Sightlines | None = None,
        weights: NDArray[np.float64] | None = None,
    ) -> None:
        spatial = require("scipy.spatial")
        self.data, self.params, self.free, self.fixed = data, params, free, fixed
        self.sightlines = (sightlines or Sightlines(np.zeros((0, 3)), np.zeros((0, 3)))).subset(
            options.max_sightlines, options.seed
        )
        self.points = points
        self.point_weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
        spacing = spatial.cKDTree(all_points).query(all_points, k=min(4, len(all_points)))[0][:, -1]
        self.tolerance = 2.0 * float(np.median(spacing))
        self.tree = spatial.cKDTree(np.vstack([all_points, support]) if len(support) else all_points)
        self.metric, self.ground, self.options = metric, ground, options
        self.units_mm = MM_PER_UNIT[data.get("units", "mm")]
        self.cache: dict[bytes, _Built | None] = {}
        self.evaluations = 0
        self.deadline = time.monotonic() + options.seconds
        self.size_mm = 100.0  # replaced below, once the start mesh is known
        self.leaves = 1
        start = self.mesh(np.zeros(len(free) + 1))
        if start is None:
            raise SpecError("the spec does not compile")
        vertices = start.vertices
        self.size_mm = float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0)))
        self.scale0 = 1.0 if metric else _initial_scale(vertices, points)
        self.size_world = self.size_mm * self.scale0
        self.f_scale = 0.004 * self.size_world
        self.margin_world = options.sightline_margin * self.size_world
        # sight lines weigh as much as the points in all, and one blocked by a grossly wrong
        # start counts no more than 5 % of the object's size: they steer the final shape, while
        # the points and the pose bring the model near first
        self.sight_weight = min(1.0, float(np.sqrt(len(points) / max(self.sightlines.points, 1))))
        self.sight_cap = 0.05 * self.size_world
        self.use_sightlines = False
        """off for the pose-only starts (the mesh does not change there), on for the joint fit"""
        self.ground_weight = np.sqrt(len(points))
        self.prior_weight = 0.5 * self.f_scale
        self.best: tuple[float, NDArray[np.float64]] | None = None
        self.loss = "soft_l1"
        self.pose_dims = 6 if metric else 7
        self.n_bins = self.leaves * 6

    # --- parameters ------------------------------------------------------------------------

    def values(self, u: NDArray[np.float64]) -> list[float]:
        """Spec values of ``u = [overall log scale, one variable per free parameter]``: every
        length and position moves with the overall scale, so the whole object can grow or shrink
        at once (a flange cannot shrink past its bolt circle one parameter at a time)."""
        overall = float(np.exp(u[0]))
        free = dict(zip((p.name for p in self.free), u[1:], strict=True))
        out = []
        for p in self.params:
            if p.name in self.fixed:
                out.append(self.fixed[p.name])
            elif p.kind == "offset":
                out.append((p.value + free[p.name] * self.size_mm / self.units_mm) * overall)
            else:
                out.append(p.value * overall * float(np.exp(free[p.name])))
        return out

    @property
    def upper(self) -> list[float]:
        c = float(np.log1p(self.options.max_change))
        return [c] + [0.5 if p.kind == "offset" else c for p in self.free]

    def bounds(self) -> tuple[list[float], list[float]]:
        lo = [-np.inf] * self.pose_dims + [-u for u in self.upper]
        return lo, [np.inf] * self.pose_dims + self.upper

    def mesh(self, u: NDArray[np.float64]) -> _Built | None:
        key = np.round(u, 12).tobytes()
        if key not in self.cache:
            try:
                model = compile_spec(
                    apply_values(self.data, self.params, self.values(u)), segments=self.options.segments
                )
            except SpecError:
                self.cache[key] = None
            else:
                self.cache[key] = self._build(model)
            if len(self.cache) > 64:
                self.cache.pop(next(iter(self.cache)))
        return self.cache[key]

    def _build(self, model: Any) -> _Built:
        size = float(np.linalg.norm(model.extents))
        self.leaves = len(model.leaves) + 1
        samples, owner, weights = surface_samples(model.vertices, model.faces, 0.02 * size)
        tri = model.vertices[model.faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        n = normals[owner]
        # coverage is asked of upward faces only: photos taken from above see them best, and a
        # too-large part shows as an upward face reaching past the points; side walls and holes
        # are often thin strips in the photos with few points, so they are left to the points'
        # own distances
        visible = n[:, 2] > 0.5
        direction = np.argmax(np.abs(n), axis=1) * 2 + (n[np.arange(len(n)), np.argmax(np.abs(n), axis=1)] > 0)
        leaf = np.where(model.face_leaf[owner] >= 0, model.face_leaf[owner], len(model.leaves))
        weights = weights[visible] / max(float(weights[visible].sum()), 1e-300)
        return _Built(
            model.vertices,
            MeshDistance(model.vertices, model.faces, h=0.025 * size),
            samples[visible],
            weights,
            (leaf * 6 + direction)[visible].astype(np.int64),
            ray_caster(model.vertices, model.faces) if len(self.sightlines) else None,
            normals,
        )

    def free_space(self, built: _Built, pose: Pose) -> NDArray[np.float64]:
        """(points,) for each point seen, the weighted, capped depth (world units) to which the
        *least* blocked of its sight lines runs inside the posed model
        (:func:`.sightlines.penetration_depths`: how far a face must move to clear it).

        One photo's view of a point through the model can be a false observation in SfM's track
        (2-4 % of them on the ChArUco renders, reprojection errors as small as the true ones);
        a model that is too large blocks every view of a point it covers."""
        if built.caster is None or not self.use_sightlines:
            return np.zeros(self.sightlines.points)
        inside = penetration_depths(
            built.caster,
            built.normals,
            pose.inverse(self.sightlines.origins),
            pose.inverse(self.sightlines.targets),
            self.margin_world / pose.scale,
            self.sightlines.object_rows,
        )
        depth = self.sightlines.per_point_min(inside * pose.scale)
        return np.asarray(self.sight_weight * np.minimum(depth, self.sight_cap))

    # --- pose ----------------------------------------------------------------------------------

    def pose(self, x: NDArray[np.float64], base: tuple[NDArray[np.float64], NDArray[np.float64]]) -> Pose:
        """Pose of ``x``: a small rotation ``x[:3]`` applied after the start rotation, translation
        offset ``x[3:6]`` in object sizes, log scale ``x[6]`` (non-metric only)."""
        rotation_cls = require("scipy.spatial.transform").Rotation
        rotation = rotation_cls.from_rotvec(x[:3]).as_matrix() @ base[0]
        scale = self.scale0 * (1.0 if self.metric else float(np.exp(x[6])))
        return Pose(rotation, base[1] + self.size_world * x[3:6], scale)

    def start(self, yaw: float, vertices: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Start rotation (``yaw`` about z) and translation standing the model on the ground
        under the points."""
        c, s = np.cos(yaw), np.sin(yaw)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        moved = self.scale0 * vertices @ rotation.T
        lo, hi = np.percentile(self.points, 2, axis=0), np.percentile(self.points, 98, axis=0)
        centre = (moved.min(axis=0) + moved.max(axis=0)) / 2
        t = np.zeros(3)
        t[:2] = (lo[:2] + hi[:2]) / 2 - centre[:2]
        t[2] = -moved[:, 2].min() if self.ground else (lo[2] + hi[2]) / 2 - centre[2]
        return rotation, t

    # --- residuals and Jacobian ----------------------------------------------------------------

    def _tick(self) -> None:
        if time.monotonic() > self.deadline or self.evaluations >= self.options.max_evaluations:
            raise _Stop
        self.evaluations += 1

    @property
    def exact(self) -> slice | None:
        """The rows kept out of the robust loss: the ground contact (:func:`robust_rho`)."""
        if not self.ground:
            return None
        row = len(self.points) + self.n_bins
        return slice(row, row + 1)

    def robust_loss(self, loss: str) -> Any:
        """``loss`` as the callable scipy takes, with :attr:`exact` rows quadratic."""
        exact = self.exact
        return lambda z: robust_rho(z, loss, exact)

    @property
    def size(self) -> int:
        return len(self.points) + self.n_bins + (1 if self.ground else 0) + len(self.free) + self.sightlines.points

    def _evaluate(self, x: NDArray[np.float64], base: Any) -> dict[str, Any] | None:
        """Residuals and what the Jacobian needs, or None for a vector that does not compile."""
        built = self.mesh(x[self.pose_dims :])
        if built is None:
            return None
        pose = self.pose(x, base)
        closest, d = built.distance.closest(pose.inverse(self.points))
        # coverage: model surface → nearest point, beyond the tolerance, capped
        world_samples = pose.apply(built.samples)
        gap, nearest = self.tree.query(world_samples)
        cap = 0.05 * self.size_world
        excess = np.clip(gap - self.tolerance, 0.0, cap)
        mass = len(self.points) * built.weights
        per_bin = np.bincount(built.bins, weights=mass * excess**2, minlength=self.n_bins)[: self.n_bins]
        coverage = np.sqrt(per_bin)
        world = pose.apply(built.vertices)
        lowest = world[int(world[:, 2].argmin())]
        parts = [d * pose.scale * self.point_weights, coverage]
        if self.ground:
            parts.append(np.array([self.ground_weight * lowest[2]]))
        # a faint pull towards the spec's own numbers: where the points cannot tell two
        # parameters apart (a boss's height hidden inside the block it stands on), keep the
        # spec's split instead of drifting
        parts.append(self.prior_weight * x[self.pose_dims + 1 :])
        # (5) free space: solid across a camera's line of sight to a point it saw
        parts.append(self.free_space(built, pose))
        return {
            "r": np.concatenate(parts),
            "pose": pose,
            "closest": pose.apply(closest),
            "built": built,
            "samples": world_samples,
            "nearest": self.tree.data[nearest],
            "gap": gap,
            "excess": excess,
            "mass": mass,
            "coverage": coverage,
            "lowest": lowest,
        }

    def distances(self, x: NDArray[np.float64], base: Any) -> NDArray[np.float64] | None:
        out = self._evaluate(x, base)
        return None if out is None else out["r"][: len(self.points)] / self.point_weights

    def residuals(self, x: NDArray[np.float64], base: Any) -> NDArray[np.float64]:
        self._tick()
        out = self._evaluate(x, base)
        if out is None:
            # an impossible parameter vector (e.g. bolt holes through the rim): a wall of cost
            return np.full(self.size, 50.0 * self.f_scale)
        r: NDArray[np.float64] = out["r"]
        cost = robust_cost(r, self.f_scale, self.loss, self.exact)
        if self.best is None or cost < self.best[0]:
            self.best = (cost, x.copy())
        return r

    def jacobian(self, x: NDArray[np.float64], base: Any, with_params: bool = True) -> NDArray[np.float64]:
        """Analytic pose columns (closest and nearest points held fixed), finite-difference
        parameter columns (one rebuild of the mesh each)."""
        self._tick()
        out = self._evaluate(x, base)
        jac = np.zeros((self.size, len(x)))
        if out is None:
            return jac
        r, pose = out["r"], out["pose"]
        m = len(self.points)
        # (1) points: d = |p - P(c)|, dd/dθ = -w · dP/dθ
        with np.errstate(invalid="ignore", divide="ignore"):
            # r = ω·d: the unit direction from the surface to the point, times the weight ω
            w = np.where(
                r[:m, None] > 1e-12,
                (self.points - out["closest"]) * (self.point_weights**2 / r[:m])[:, None],
                0.0,
            )
        self._pose_columns(jac[:m], -w, out["closest"] - pose.translation)
        # (2) coverage: r_b = sqrt(Σ mass·e²), dr_b/dθ = Σ mass·e·(u · dP/dθ) / r_b
        gap = np.maximum(out["gap"], 1e-12)
        active = (out["excess"] > 0) & (out["excess"] < 0.05 * self.size_world)
        u = (out["samples"] - out["nearest"]) / gap[:, None]
        coef = np.where(active, out["mass"] * out["excess"], 0.0)
        sample_cols = np.zeros((len(u), self.pose_dims))
        self._pose_columns(sample_cols, u, out["samples"] - pose.translation)
        bins = out["built"].bins
        for k in range(self.pose_dims):
            summed = np.bincount(bins, weights=coef * sample_cols[:, k], minlength=self.n_bins)[: self.n_bins]
            with np.errstate(invalid="ignore", divide="ignore"):
                jac[m : m + self.n_bins, k] = np.where(out["coverage"] > 1e-12, summed / out["coverage"], 0.0)
        # (3) ground contact: the lowest vertex's height
        if self.ground:
            row = m + self.n_bins
            self._pose_columns(
                jac[row : row + 1], np.array([[0.0, 0.0, self.ground_weight]]), (out["lowest"] - pose.translation)[None]
            )
        # (5) free space: finite differences of the ray casts (no rebuild)
        if len(self.sightlines) and self.use_sightlines:
            rows = slice(self.size - self.sightlines.points, self.size)
            for k in range(self.pose_dims):
                shifted = x.copy()
                shifted[k] += 1e-4
                jac[rows, k] = (self.free_space(out["built"], self.pose(shifted, base)) - r[rows]) / 1e-4
        if with_params:
            step = 1e-3
            for j in range(self.pose_dims, len(x)):
                self._tick()
                shifted = x.copy()
                shifted[j] += step if shifted[j] + step <= self.upper[j - self.pose_dims] else -step
                moved = self._evaluate(shifted, base)
                if moved is not None:
                    jac[:, j] = (moved["r"] - r) / (shifted[j] - x[j])
        return jac

    def _pose_columns(self, out: NDArray[np.float64], g: NDArray[np.float64], arm: NDArray[np.float64]) -> None:
        """out[:, :pose_dims] = g · dP/dθ for world points P = s·R·x + t with ``arm`` = s·R·x."""
        for k in range(3):
            out[:, k] = np.einsum("ij,ij->i", g, np.cross(np.eye(3)[k], arm))
            out[:, 3 + k] = g[:, k] * self.size_world
        if not self.metric:
            out[:, 6] = np.einsum("ij,ij->i", g, arm)


def fit_spec(
    spec: ObjectSpec | dict[str, Any],
    points: NDArray[np.float64],
    *,
    metric: bool,
    known: tuple[Param, float] | None = None,
    ground: bool = True,
    support: NDArray[np.float64] | None = None,
    options: FitOptions | None = None,
    sightlines: Sightlines | None = None,
    errors: NDArray[np.float64] | None = None,
) -> FitResult:
    """Fit ``spec`` to the object's world ``points`` (mm when ``metric``); see the module doc.

    ``support``: other observed surface points (the table around the object); the model's
    visible surface must lie near an observed point, but only ``points`` are fitted.
    ``sightlines``: camera centre → observed point segments (world frame, object and table
    points), which the model must not block (:mod:`.sightlines`).
    ``errors``: each point's reprojection error (pixels); a point's distance is weighted by
    ``1 / sqrt(1 + (error / median error)²)`` — SfM's least certain points (a hole's rim, where a
    feature mixes the top face and the wall, triangulates into the hole at the top's height with
    twice the typical error) count less than the well-measured ones.
    """
    optimize = require("scipy.optimize")
    options = options or FitOptions()
    started = time.monotonic()
    _check_size(spec, options)
    data, params = spec_parameters(spec, positions=options.positions)
    fixed = {known[0].name: known[1]} if known else {}
    if not metric and not fixed:
        raise ValueError("points without metric scale need a known dimension")
    free = [p for p in params if p.name not in fixed]
    weights = None if errors is None else point_weights(errors)
    subset = points
    if len(points) > options.max_points:
        pick = np.random.default_rng(options.seed).choice(len(points), options.max_points, replace=False)
        subset = points[pick]
        weights = None if weights is None else weights[pick]
    problem = _Problem(
        data,
        params,
        free,
        fixed,
        subset,
        points,
        np.zeros((0, 3)) if support is None else support,
        metric=metric,
        ground=ground and options.ground_contact,
        options=options,
        sightlines=sightlines,
        weights=weights,
    )
    start = problem.mesh(np.zeros(len(free) + 1))
    assert start is not None
    vertices = start.vertices
    notes: list[str] = []

    # 1. pose only (the mesh is fixed: no rebuilds, analytic Jacobian): a short fit from each
    #    heading, then the best one fitted to convergence
    u0 = np.zeros(len(free) + 1)
    starts: list[tuple[float, NDArray[np.float64], Any]] = []
    try:
        for k in range(options.yaw_starts):
            base = problem.start(2 * np.pi * k / options.yaw_starts, vertices)
            res = _pose_fit(optimize, problem, base, np.zeros(problem.pose_dims), u0, 6)
            starts.append((float(res.cost), res.x, base))
        _, x_pose, base = min(starts, key=lambda s: s[0])
        x_pose = _pose_fit(optimize, problem, base, x_pose, u0, 40).x
    except _Stop:
        raise _limit_error(options) from None
    x_start = np.concatenate([x_pose, u0])
    before = problem.distances(x_start, base)
    assert before is not None

    # 2. pose and parameters together; a wide robust scale first (far points still pull), then
    #    the noise scale (far points are outliers): the points' own noise, measured on the
    #    residuals once the model is close
    lo, hi = problem.bounds()
    stopped = "converged"
    jac = None
    x_final = x_start
    noise = problem.f_scale
    features = _feature_indices(problem) if options.feature_search else []
    problem.use_sightlines = True
    try:
        for stage, f_scale in enumerate((10 * noise, 3 * noise, noise)):
            last = stage == 2
            if last and options.measured_noise:
                f_scale = _measured_noise(problem, x_final, base, noise)
            problem.f_scale = f_scale
            problem.loss = options.final_loss if last else "soft_l1"
            problem.best = None
            if last and features:
                # 3. the features (holes, bores, bolt circles) the outer shape does not depend
                #    on: a global search along each, pose and outer dimensions held — a hole
                #    guessed 20 % off sits on solid material, where the local fit only shrinks it
                x_final = _search_features(problem, base, np.clip(x_final, lo, hi), features, lo, hi, f_scale)
                problem.best = None
            res = optimize.least_squares(
                lambda x: problem.residuals(x, base),
                np.clip(x_final, lo, hi),
                jac=lambda x: problem.jacobian(x, base),
                bounds=(lo, hi),
                loss=problem.robust_loss(problem.loss),
                f_scale=f_scale,
                x_scale="jac",
                max_nfev=options.max_evaluations,
                xtol=1e-5,
                ftol=1e-6,
            )
            x_final, jac = res.x, res.jac
    except _Stop:
        stopped = "time limit" if time.monotonic() > problem.deadline else "evaluation limit"
        if problem.best is not None:
            x_final = problem.best[1]
        jac = None
        notes.append(f"the fit stopped at its {stopped}; the best parameters found so far are kept")
    problem.f_scale = noise

    observed = _observed(jac, problem)
    pairs = _entangled(problem, x_final, base, [j for j, seen in enumerate(observed) if seen])
    for a, b in pairs:
        notes.append(
            f"{a} and {b}: the photos fix only a combination of the two (such as the top of a part whose "
            "bottom is hidden inside another); the values given are one split of many that fit them equally well"
        )
    u_final = x_final[problem.pose_dims :].copy()
    for j, seen in enumerate(observed):
        if not seen:
            u_final[1 + j] = 0.0  # nothing in the points constrains it: the spec's value, scaled with the rest
    x_final = np.concatenate([x_final[: problem.pose_dims], u_final])
    after = problem.distances(x_final, base)
    if after is None:  # cannot happen for a vector the fit accepted; keep the start then
        x_final, after = x_start, before
    values = problem.values(x_final[problem.pose_dims :])
    refined = apply_values(data, params, [_round(v) for v in values])
    free_index = {p.name: j for j, p in enumerate(free)}
    fitted = [
        FittedParam(
            p.name,
            describe(p, data),
            p.value,
            _round(v),
            p.kind,
            p.assumed,
            p.name in fixed,
            p.name in fixed or observed[free_index[p.name]],
            tuple(b if a == p.name else a for a, b in pairs if p.name in (a, b)),
        )
        for p, v in zip(params, values, strict=True)
    ]
    inlier = 3 * problem.f_scale
    return FitResult(
        refined,
        fitted,
        problem.pose(x_final, base),
        residual_stats(before, inlier),
        residual_stats(after, inlier),
        problem.evaluations,
        time.monotonic() - started,
        stopped,
        notes,
    )


def _measured_noise(problem: _Problem, x: NDArray[np.float64], base: Any, ceiling: float) -> float:
    """The robust loss scale of the last stage: 2.385 σ (Cauchy's 95 %-efficiency constant), σ
    the points' noise estimated from their distances to the model fitted so far (1.4826 × the
    median, as for a half-normal), within [ceiling / 4, ceiling].

    A fixed share of the object's size (``ceiling``, 0.4 %) is several times SfM's real noise
    on a well-textured object (0.04-0.1 mm on the bench's, against 0.36-0.55 mm): points a
    millimetre off — a hole's rim triangulated into the hole — then still pull with half their
    weight and shrink the hole; at the measured scale they are outliers, as they should be.
    """
    distances = problem.distances(x, base)
    if distances is None or not len(distances):
        return ceiling
    sigma = 1.4826 * float(np.median(distances))
    return float(np.clip(2.385 * sigma, 0.25 * ceiling, ceiling))


def point_weights(errors: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n,) weight of each point from its reprojection error (pixels): ``1 / sqrt(1 + (e / ẽ)²)``,
    ẽ the median error — the inverse of a noise that grows with the error, 0.71 at the median."""
    errors = np.asarray(errors, dtype=np.float64)
    typical = max(float(np.median(errors)), 1e-6)
    return np.asarray(1.0 / np.sqrt(1.0 + (errors / typical) ** 2))


def _feature_indices(problem: _Problem) -> list[int]:
    """Indices (into the full vector ``x``) of the free parameters that do not move the model's
    bounding box: holes, bores, bolt circles, inner features. The outer dimensions are measured
    well by the local fit (the points and free space bound them); these are searched globally."""
    u0 = np.zeros(len(problem.free) + 1)
    start = problem.mesh(u0)
    if start is None:
        return []
    extents = np.ptp(start.vertices, axis=0)
    out = []
    for j, p in enumerate(problem.free):
        u = u0.copy()
        u[1 + j] = 0.02 if p.kind == "offset" else 0.1
        moved = problem.mesh(u) or problem.mesh(-u)
        if moved is None:
            continue
        if np.abs(np.ptp(moved.vertices, axis=0) - extents).max() < 1e-4 * problem.size_mm:
            out.append(problem.pose_dims + 1 + j)
    return out


def _search_features(
    problem: _Problem,
    base: Any,
    x: NDArray[np.float64],
    features: list[int],
    lo: list[float],
    hi: list[float],
    f_scale: float,
    rounds: int = 2,
) -> NDArray[np.float64]:
    """Coordinate-wise grid search of the feature parameters (a coarse grid over ±30 % — ±15 %
    of the object's size for positions — then finer ones around the best, to 0.5 %: at the
    measured noise scale a hole's cost is too rough for the local fit to move it much further
    than the grid's step), minimising the
    robust cost at ``f_scale``; vectors that do not compile cost a wall."""
    saved = problem.f_scale
    problem.f_scale = f_scale

    def cost(v: NDArray[np.float64]) -> float:
        r = problem.residuals(v, base)
        return robust_cost(r, f_scale, problem.loss, problem.exact)

    x = x.copy()
    best = cost(x)
    try:
        for _ in range(rounds):
            for j in features:
                offset = problem.free[j - problem.pose_dims - 1].kind == "offset"
                for span, n in (
                    (0.15 if offset else 0.3, 9),
                    (0.03 if offset else 0.06, 7),
                    (0.0075 if offset else 0.015, 7),
                ):
                    for value in np.clip(x[j] + np.linspace(-span, span, n), lo[j], hi[j]):
                        trial = x.copy()
                        trial[j] = value
                        c = cost(trial)
                        if c < best:
                            best, x = c, trial
    finally:
        problem.f_scale = saved
    return x


def _pose_fit(
    optimize: Any, problem: _Problem, base: Any, x0: NDArray[np.float64], u: NDArray[np.float64], evaluations: int
) -> Any:
    return optimize.least_squares(
        lambda xp: problem.residuals(np.concatenate([xp, u]), base),
        x0,
        jac=lambda xp: problem.jacobian(np.concatenate([xp, u]), base, False)[:, : problem.pose_dims],
        loss=problem.robust_loss("soft_l1"),
        f_scale=5 * problem.f_scale,
        max_nfev=evaluations,
    )


def _observed(jac: Any, problem: _Problem) -> list[bool]:
    """Which free parameters the points constrain: a 10 % change must move the residuals by
    more than the noise scale (from the final Jacobian; all of them when it is unknown)."""
    n = len(problem.free)
    if jac is None:
        return [True] * n
    columns = np.asarray(jac)[:, problem.pose_dims + 1 :]
    norms = np.linalg.norm(columns, axis=0)
    return [bool(0.1 * norms[j] > 0.5 * problem.f_scale) for j in range(n)]


def _entangled(
    problem: _Problem, x: NDArray[np.float64], base: Any, candidates: list[int], step: float = 0.02
) -> list[tuple[str, str]]:
    """Pairs of free parameters (of one part) the points fix only in combination: a 10 % move
    along some mix of the two changes the points' signed distances and the ground contact by
    less than half the noise scale — the test :func:`_observed` puts to each parameter alone. A
    boss whose bottom is hidden inside the block it stands on: its height and its position move
    only its top, together.

    The mix comes from central differences of the signed distances (``step``), then checked by
    rebuilding the model moved along it both ways by ``step`` (pose held)."""
    parts: dict[str, list[int]] = {}
    for j in candidates:
        parts.setdefault(problem.free[j].name.split(".")[0], []).append(j)
    pairs = [(a, b) for group in parts.values() for k, a in enumerate(group) for b in group[k + 1 :]]
    if not pairs:
        return []
    lo, hi = problem.bounds()

    def signed(v: NDArray[np.float64]) -> NDArray[np.float64] | None:
        built = problem.mesh(v[problem.pose_dims :])
        if built is None:
            return None
        pose = problem.pose(v, base)
        lowest = float(pose.apply(built.vertices)[:, 2].min()) if problem.ground else 0.0
        d = built.distance.signed(pose.inverse(problem.points)) * pose.scale * problem.point_weights
        return np.r_[d, problem.ground_weight * lowest]

    def moved(v: NDArray[np.float64]) -> NDArray[np.float64] | None:
        return None if np.any(v < lo) or np.any(v > hi) else signed(v)

    r0 = signed(x)
    if r0 is None:
        return []
    # offsets are in units of the object's size: a tenth of the step moves a surface about as
    # far as the step does through a part's length (the columns must see the same nonlinearity)
    scale = {j: 0.1 if problem.free[j].kind == "offset" else 1.0 for pair in pairs for j in pair}
    columns: dict[int, NDArray[np.float64]] = {}
    for j in sorted(scale):
        up, down = x.copy(), x.copy()
        up[problem.pose_dims + 1 + j] += step * scale[j]
        down[problem.pose_dims + 1 + j] -= step * scale[j]
        r_up, r_down = moved(up), moved(down)
        if r_up is not None and r_down is not None:
            columns[j] = (r_up - r_down) / (2 * step)
    out = []
    for a, b in pairs:
        if a not in columns or b not in columns:
            continue
        ca, cb = columns[a], columns[b]
        gram = np.array([[ca @ ca, ca @ cb], [ca @ cb, cb @ cb]])
        mix = np.linalg.eigh(gram)[1][:, 0]
        change = 0.0
        for sign in (1.0, -1.0):
            v = x.copy()
            v[problem.pose_dims + 1 + a] += sign * step * mix[0] * scale[a]
            v[problem.pose_dims + 1 + b] += sign * step * mix[1] * scale[b]
            r = moved(v)
            change = max(change, np.inf if r is None else float(np.linalg.norm(r - r0)))
        # per 10 % (a move of ``step``: small enough that the log parameters stay straight)
        if 0.1 / step * change < 0.5 * problem.f_scale:
            out.append((problem.free[a].name, problem.free[b].name))
    return out


def _initial_scale(vertices: NDArray[np.float64], points: NDArray[np.float64]) -> float:
    """World units per model mm from the height and horizontal spread of points and model."""
    model_h = float(np.ptp(vertices[:, 2]))
    pts_h = float(np.percentile(points[:, 2], 99) - max(0.0, float(np.percentile(points[:, 2], 1))))
    model_r = float(np.linalg.norm(np.ptp(vertices[:, :2], axis=0)))
    pts_r = float(np.linalg.norm(np.percentile(points[:, :2], 99, axis=0) - np.percentile(points[:, :2], 1, axis=0)))
    ratios = [r for r in (pts_h / model_h if model_h > 0 else 0, pts_r / model_r if model_r > 0 else 0) if r > 0]
    return float(np.mean(ratios)) if ratios else 1.0


def _check_size(spec: ObjectSpec | dict[str, Any], options: FitOptions) -> None:
    from vlserve.recon3d.budget import BuildLimits, check_budget
    from vlserve.recon3d.plan import build_plan
    from vlserve.recon3d.validation import load_spec

    limits = BuildLimits(
        max_primitives=options.max_primitives, max_triangles=options.max_triangles, segments=options.segments
    )
    check_budget(build_plan(load_spec(spec)), limits)


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _limit_error(options: FitOptions) -> Exception:
    from vlserve.recon3d.refine.errors import RefineError

    return RefineError(
        f"the fit did not finish its first stage within {options.seconds:.0f} s / {options.max_evaluations} "
        "evaluations: the spec is too heavy to fit; simplify it or raise the limits"
    )
