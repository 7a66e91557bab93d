"""Free space from the photos: what a camera saw, nothing stood in front of.

Every SfM point was observed by the photos of its track, so the segment from each of those
camera centres to the point crossed only air. A model that is too large, a hole in the wrong
place or a leg that sticks out puts solid material across such sight lines — evidence that the
point-to-surface distance alone cannot give (points inside a too-large model still lie close to
*some* face of it, and table points beside the object are not matched to the object at all).

:class:`Sightlines` holds those segments (camera centre → observed point, world frame) for the
object's points and for the table points around it, grouped by point; :func:`inside_lengths`
measures, for a mesh, how much of each segment runs inside the solid, and
:func:`penetration_depths` how deep (how far a face must move to clear it: what the fit weighs).
Both are continuous in the mesh's vertices (they shrink to zero as a face slides off the
segment), which the fit's finite-difference Jacobian needs. The fit counts each point by its
least blocked view (:meth:`Sightlines.per_point_min`): one photo's view of a point can be a false
match in SfM's track, while a model too large blocks every view of a point it covers. Rays are
cast with trimesh (Embree through ``embreex`` when installed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require


@dataclass(frozen=True)
class Sightlines:
    """(o, 3) camera centres and (o, 3) observed points, world frame: one row per observation,
    the rows of one point together (``owners``: the point each row belongs to, ascending)."""

    origins: NDArray[np.float64]
    targets: NDArray[np.float64]
    owners: NDArray[np.int64] | None = None
    """(o,) the point of each row; None: every row its own point"""
    on_object: NDArray[np.bool_] | None = None
    """(o,) rows whose point is one of the object's (the fit measures its distance to the
    surface): such a line counts only the solid it leaves before its point
    (:func:`penetration_depths` ``stop_at_exit``); None: none"""

    @property
    def object_rows(self) -> NDArray[np.bool_]:
        """(o,) :attr:`on_object`, all False when None."""
        return np.zeros(len(self), dtype=bool) if self.on_object is None else self.on_object

    def __len__(self) -> int:
        return len(self.origins)

    @property
    def groups(self) -> NDArray[np.int64]:
        """(o,) the point of each row, numbered 0 … :attr:`points` − 1."""
        return np.arange(len(self)) if self.owners is None else self.owners

    @property
    def points(self) -> int:
        """How many points the rows belong to."""
        return int(self.groups[-1]) + 1 if len(self) else 0

    def per_point_min(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """(points,) the smallest of ``values`` (one per row) over each point's rows."""
        if not len(self):
            return np.zeros(0)
        starts = np.flatnonzero(np.r_[True, np.diff(self.groups) != 0])
        return np.asarray(np.minimum.reduceat(np.asarray(values, dtype=np.float64), starts))

    @classmethod
    def from_tracks(
        cls,
        cameras: NDArray[np.float64],
        points: NDArray[np.float64],
        observers: list[NDArray[np.int64]],
        min_views: int = 1,
        on_object: bool = False,
    ) -> Sightlines:
        """One sight line per (point, photo that observed it); ``cameras`` are world centres.
        Points seen in fewer than ``min_views`` photos are left out; ``on_object``: the points are
        the object's (:attr:`on_object`)."""
        counts = np.array([len(o) if len(o) >= min_views else 0 for o in observers], dtype=np.int64)
        if not counts.sum():
            return cls(np.zeros((0, 3)), np.zeros((0, 3)))
        which = np.concatenate([np.asarray(o, dtype=np.int64) for o, c in zip(observers, counts, strict=True) if c])
        owners = np.repeat(np.arange(int((counts > 0).sum())), counts[counts > 0])
        targets = np.repeat(np.asarray(points), counts, axis=0)
        return cls(np.asarray(cameras)[which], targets, owners, np.full(len(targets), on_object))

    def subset(self, limit: int, seed: int = 0) -> Sightlines:
        """At most ``limit`` sight lines, a fixed random choice of whole points (all of a point's
        rows or none)."""
        if len(self) <= limit:
            return self
        groups = self.groups
        counts = np.bincount(groups)
        order = np.random.default_rng(seed).permutation(len(counts))
        chosen = np.zeros(len(counts), dtype=bool)
        chosen[order[np.cumsum(counts[order]) <= limit]] = True
        rows = np.flatnonzero(chosen[groups])
        renumber = np.cumsum(chosen) - 1
        return Sightlines(self.origins[rows], self.targets[rows], renumber[groups[rows]], self.object_rows[rows])

    def without_points(self, rows: NDArray[np.bool_]) -> Sightlines:
        """These sight lines less every point that has one of ``rows`` (o,) among its own."""
        if not rows.any():
            return self
        groups = self.groups
        drop = np.zeros(self.points, dtype=bool)
        drop[groups[rows]] = True
        keep = ~drop[groups]
        renumber = np.cumsum(~drop) - 1
        return Sightlines(self.origins[keep], self.targets[keep], renumber[groups[keep]], self.object_rows[keep])

    def __add__(self, other: Sightlines) -> Sightlines:
        owners = np.concatenate([self.groups, other.groups + self.points])
        return Sightlines(
            np.vstack([self.origins, other.origins]),
            np.vstack([self.targets, other.targets]),
            owners,
            np.concatenate([self.object_rows, other.object_rows]),
        )


def surface_normals(points: NDArray[np.float64], towards: NDArray[np.float64], k: int = 12) -> NDArray[np.float64]:
    """(n, 3) unit normals of a point cloud's surface: the least-spread direction of each point's
    ``k`` nearest neighbours, turned to face ``towards`` ((n, 3): e.g. the mean centre of the
    cameras that saw the point — a surface is seen from its outside)."""
    spatial = require("scipy.spatial")
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3:
        return np.tile([0.0, 0.0, 1.0], (len(points), 1))
    _, near = spatial.cKDTree(points).query(points, k=min(k, len(points)))
    local = points[near] - points[near].mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", local, local))
    normals = vectors[:, :, 0]
    flip = np.einsum("ij,ij->i", normals, towards - points) < 0
    normals[flip] *= -1
    return np.asarray(normals)


def through_observed_surface(
    lines: Sightlines,
    points: NDArray[np.float64],
    normals: NDArray[np.float64],
    *,
    radius: float,
    tolerance: float,
) -> NDArray[np.bool_]:
    """(o,) which sight lines pass behind an observed surface point on their way: within
    ``radius`` of a point (farther than ``radius`` from the line's own target) and more than
    ``tolerance`` on the inner side of its tangent plane (``normals``: :func:`surface_normals`).

    A photo cannot have seen a point through a surface that photos saw in front of it. Model-free:
    it asks only the points, so a model that is too large cannot talk a true view away. Lines
    that graze an edge from outside pass on the outer side of the edge's points and are kept.
    """
    spatial = require("scipy.spatial")
    out = np.zeros(len(lines), dtype=bool)
    if not len(lines) or not len(points):
        return out
    tree = spatial.cKDTree(points)
    lo, hi = points.min(axis=0) - radius, points.max(axis=0) + radius
    for i, (a, b) in enumerate(zip(lines.origins, lines.targets, strict=True)):
        length = float(np.linalg.norm(b - a))
        if length <= radius:
            continue
        u = (b - a) / length
        # only the part of the segment within the points' bounding box can pass near them
        with np.errstate(divide="ignore", invalid="ignore"):
            t0 = np.where(np.abs(u) > 1e-12, (lo - a) / u, -np.inf)
            t1 = np.where(np.abs(u) > 1e-12, (hi - a) / u, np.inf)
        enter = max(0.0, float(np.max(np.minimum(t0, t1))))
        leave = min(length, float(np.min(np.maximum(t0, t1))))
        if enter >= leave:
            continue
        steps = a + np.arange(enter, leave + 0.5 * radius, 0.5 * radius)[:, None] * u
        ids = np.unique(np.fromiter((j for group in tree.query_ball_point(steps, radius) for j in group),
                                    dtype=np.int64))
        if not len(ids):
            continue
        y = points[ids]
        closest = a + np.clip((y - a) @ u, 0.0, length)[:, None] * u
        side = np.einsum("ij,ij->i", closest - y, normals[ids])
        behind = (np.linalg.norm(closest - y, axis=1) < radius) & (side < -tolerance)
        behind &= np.linalg.norm(y - b, axis=1) > radius
        out[i] = bool(behind.any())
    return out


def ray_caster(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> Any:
    """A trimesh ray intersector for the mesh (Embree when available: ~10 ms for 2000 rays)."""
    trimesh = require("trimesh")
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    try:
        from trimesh.ray import ray_pyembree

        return ray_pyembree.RayMeshIntersector(mesh)
    except ImportError:  # embreex missing: trimesh's own intersector (much slower, still correct)
        from trimesh.ray import ray_triangle

        return ray_triangle.RayMeshIntersector(mesh)


def inside_lengths(
    caster: Any,
    normals: NDArray[np.float64],
    origins: NDArray[np.float64],
    targets: NDArray[np.float64],
    margin: float,
) -> NDArray[np.float64]:
    """(o,) length of each segment ``origin → target − margin`` that lies inside the closed mesh.

    ``normals`` are the mesh's (m, 3) outward face normals; origins must be outside the solid
    (cameras are). The last ``margin`` before the target is not counted: the point itself lies
    on the surface, within noise, and is the point-to-surface term's business.
    """
    direction = targets - origins
    length = np.linalg.norm(direction, axis=1)
    direction = direction / np.maximum(length, 1e-300)[:, None]
    limit = np.maximum(length - margin, 0.0)
    out = np.zeros(len(origins))
    if not len(origins):
        return out
    locations, rays, tris = caster.intersects_location(origins, direction, multiple_hits=True)
    if not len(rays):
        return out
    t = np.einsum("ij,ij->i", locations - origins[rays], direction[rays])
    order = np.lexsort((t, rays))
    rays, t, tris = rays[order], t[order], tris[order]
    # a ray through a shared edge is reported once per triangle: drop the repeat
    repeat = np.zeros(len(rays), dtype=bool)
    repeat[1:] = (rays[1:] == rays[:-1]) & (np.abs(t[1:] - t[:-1]) < 1e-9 * np.maximum(length[rays[1:]], 1.0))
    rays, t, tris = rays[~repeat], t[~repeat], tris[~repeat]
    entering = np.einsum("ij,ij->i", normals[tris], direction[rays]) < 0
    clipped = np.minimum(np.maximum(t, 0.0), limit[rays])
    # inside length = Σ exits − Σ entries (each clipped to the segment), plus the segment's end
    # when it finishes inside (one more entry than exits)
    out += np.bincount(rays, weights=np.where(entering, -clipped, clipped), minlength=len(origins))
    balance = np.bincount(rays, weights=np.where(entering, 1.0, -1.0), minlength=len(origins))
    out += np.where(balance > 0.5, limit, 0.0)
    return np.maximum(out, 0.0)


def _cut_at_last_exit(
    caster: Any,
    normals: NDArray[np.float64],
    origins: NDArray[np.float64],
    targets: NDArray[np.float64],
    margin: float,
    which: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """``targets``, those of the ``which`` segments that end inside the solid moved back to the
    last point where the segment left it (to the origin when it never did), plus ``margin``."""
    rows = np.flatnonzero(which)
    o = origins[rows]
    direction = targets[rows] - o
    length = np.linalg.norm(direction, axis=1)
    direction = direction / np.maximum(length, 1e-300)[:, None]
    limit = np.maximum(length - margin, 0.0)
    locations, rays, tris = caster.intersects_location(o, direction, multiple_hits=True)
    if not len(rays):
        return targets
    t = np.einsum("ij,ij->i", locations - o[rays], direction[rays])
    within = (t >= 0) & (t <= limit[rays])
    rays, t, tris = rays[within], t[within], tris[within]
    entering = np.einsum("ij,ij->i", normals[tris], direction[rays]) < 0
    balance = np.bincount(rays, weights=np.where(entering, 1.0, -1.0), minlength=len(rows))
    last_exit = np.zeros(len(rows))
    np.maximum.at(last_exit, rays[~entering], t[~entering])
    inside = balance > 0.5
    out = targets.copy()
    out[rows[inside]] = o[inside] + direction[inside] * (last_exit[inside] + margin)[:, None]
    return out


def penetration_depths(
    caster: Any,
    normals: NDArray[np.float64],
    origins: NDArray[np.float64],
    targets: NDArray[np.float64],
    margin: float,
    stop_at_exit: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """(o,) how far the solid's surface would have to move for each segment to clear it: the
    inside length ℓ (:func:`inside_lengths`) times the smaller of ``|n · d|`` at the face it
    enters and at the face it leaves by (ℓ · |n · d| is how deep the chord reaches below that
    face); ℓ · |n · d| at the entry face when the segment ends inside.

    This, not ℓ, is comparable with a point's distance to the surface. A sight line that grazes
    an edge a pixel too low — a feature at the object's silhouette, triangulated on the table
    behind it — runs millimetres inside along its length but only a fraction of a millimetre
    deep; weighed by ℓ, a few dozen of them pulled a block's unseen end face 1-2 mm inwards.

    ``stop_at_exit`` (o,): segments whose point lies on the object's surface end at the last
    point where they leave the solid before it: a point inside the model by its noise, or a face
    the model has not yet moved to, is its distance term's business — only solid crossed *in
    front of* the point is free-space evidence (a hole too small, whose rim hides the far wall).
    """
    out = np.zeros(len(origins))
    if not len(origins):
        return out
    if stop_at_exit is not None and stop_at_exit.any():
        targets = _cut_at_last_exit(caster, normals, origins, targets, margin, stop_at_exit)
    inside = inside_lengths(caster, normals, origins, targets, margin)
    crossing = np.flatnonzero(inside > 0)
    if not len(crossing):
        return out
    o, t_end = origins[crossing], targets[crossing]
    direction = t_end - o
    length = np.linalg.norm(direction, axis=1)
    direction = direction / np.maximum(length, 1e-300)[:, None]
    limit = np.maximum(length - margin, 0.0)
    locations, rays, tris = caster.intersects_location(o, direction, multiple_hits=True)
    cos_in = np.ones(len(crossing))
    cos_out = np.ones(len(crossing))
    if len(rays):
        t = np.einsum("ij,ij->i", locations - o[rays], direction[rays])
        within = (t >= 0) & (t <= limit[rays])
        rays, t, tris = rays[within], t[within], tris[within]
        order = np.lexsort((t, rays))
        rays, tris = rays[order], tris[order]
        cosine = np.abs(np.einsum("ij,ij->i", normals[tris], direction[rays]))
        entering = np.einsum("ij,ij->i", normals[tris], direction[rays]) < 0
        # the first entry and the last exit of each segment (hits sorted along each ray)
        first = np.unique(rays[entering], return_index=True)
        cos_in[first[0]] = cosine[np.flatnonzero(entering)[first[1]]]
        exits = np.flatnonzero(~entering)[::-1]
        last = np.unique(rays[exits], return_index=True)
        cos_out[last[0]] = cosine[exits[last[1]]]
        ends_inside = np.ones(len(crossing), dtype=bool)
        ends_inside[last[0]] = False
        cos_out = np.where(ends_inside, cos_in, cos_out)
    out[crossing] = inside[crossing] * np.minimum(cos_in, cos_out)
    return out
