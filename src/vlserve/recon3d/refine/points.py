"""The object's points: world-frame SfM points above the ground, largest connected cluster.

The table, the marker and whatever else lies flat are removed by height (a threshold from the
spread of the ground points themselves), isolated outliers by reprojection error, and other
objects by keeping the largest cluster of points linked within a radius.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.errors import RefineError
from vlserve.recon3d.refine.scale import WorldFrame

MIN_OBJECT_POINTS = 30


@dataclass(frozen=True)
class ObjectPoints:
    """(n, 3) world points of the object, and how they were chosen."""

    points: NDArray[np.float64]
    ground_threshold: float
    """points at most this high (world units) counted as ground"""
    total: int
    """all SfM points before selection"""
    ground: NDArray[np.float64]
    """(g, 3) ground points around the object's footprint: where the object is *not*"""
    indices: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(n,) index of each of ``points`` in the SfM points (to find the photos that saw it)"""
    ground_indices: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(g,) index of each of ``ground`` in the SfM points"""


def object_points(
    points: NDArray[np.float64],
    errors: NDArray[np.float64],
    frame: WorldFrame,
    *,
    max_error_px: float = 2.0,
    max_points: int = 20000,
    seed: int = 0,
    relative_error: float = 2.0,
) -> ObjectPoints:
    """Select the object's points from all SfM ``points`` (reconstruction frame).

    Reliable points have a reprojection error of at most ``max_error_px`` and at most
    ``relative_error`` times the median error of all points: on the bench's renders (median
    0.4-0.6 px) the points SfM puts into a hole at the top's height, where a feature mixes the
    rim and the wall below, have 1.3 px (the hole wall's own points 0.1 px) — they made the
    holes come out several per cent small.
    """
    limit = max_error_px
    if len(errors):
        limit = min(max_error_px, relative_error * float(np.median(errors)))
    reliable = np.flatnonzero(errors <= limit)
    world = frame.apply(points[reliable])
    if len(world) < MIN_OBJECT_POINTS:
        raise RefineError(f"only {len(world)} reliable points were reconstructed: take sharper, overlapping photos")
    z = world[:, 2]
    above = z[z > 0]
    height = float(np.percentile(above, 98)) if len(above) else 0.0
    near_ground = np.abs(z) < 0.05 * max(height, 1e-9)
    # the ground points' own spread (flat table + SfM noise), with a floor at 1.5 % of the height
    noise = float(np.median(np.abs(z[near_ground]))) * 1.4826 if near_ground.any() else 0.0
    threshold = max(4.0 * noise, 0.015 * height)
    chosen = reliable[(z > threshold) & (z < 3.0 * height + threshold)]
    candidates = world[(z > threshold) & (z < 3.0 * height + threshold)]
    if len(candidates) < MIN_OBJECT_POINTS:
        raise RefineError(
            f"only {len(candidates)} points stand above the ground plane: is the object in the photos, "
            "textured enough, and standing on the table?"
        )
    in_cluster = _largest_cluster(candidates, height)
    kept, chosen = candidates[in_cluster], chosen[in_cluster]
    if len(kept) < MIN_OBJECT_POINTS:
        raise RefineError(f"the object's point cluster has only {len(kept)} points: take more photos closer up")
    if len(kept) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(kept), max_points, replace=False))
        kept, chosen = kept[pick], chosen[pick]
    lo, hi = kept[:, :2].min(axis=0), kept[:, :2].max(axis=0)
    margin = 0.5 * (hi - lo)
    near = (np.abs(z) <= threshold) & np.all((world[:, :2] >= lo - margin) & (world[:, :2] <= hi + margin), axis=1)
    return ObjectPoints(kept, threshold, len(points), world[near], chosen, reliable[near])


def _largest_cluster(points: NDArray[np.float64], height: float) -> NDArray[np.bool_]:
    spatial = require("scipy.spatial")
    sparse = require("scipy.sparse")
    csgraph = require("scipy.sparse.csgraph")
    tree = spatial.cKDTree(points)
    # link radius: a few times the typical spacing of neighbouring points
    spacing = tree.query(points, k=min(5, len(points)))[0][:, -1]
    # generous: walls seen at a grazing angle leave gaps between a part's top and what it stands
    # on, and only other objects, well apart, should be cut off
    radius = max(3.0 * float(np.median(spacing)), 0.3 * height)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    _, labels = csgraph.connected_components(graph, directed=False)
    biggest = np.bincount(labels).argmax()
    return np.asarray(labels == biggest)


def level_frame(
    frame: WorldFrame,
    points: NDArray[np.float64],
    errors: NDArray[np.float64],
    *,
    max_error_px: float = 2.0,
    max_tilt_deg: float = 5.0,
    min_points: int = 30,
) -> tuple[WorldFrame, float]:
    """The world frame levelled on the table around the object, and the tilt corrected (degrees).

    A marker's four corners fix the ground plane only roughly: a few tenths of a pixel of corner
    noise tilt a 40 mm marker's normal by a few tenths of a degree, which 50 mm away lifts the
    table under the object by half a millimetre — and since the model stands on the ground, every
    height and thickness comes out that much short. The table points all around the object
    (hundreds, in the same photos) fix the plane where the object stands: a robust plane fit
    (iteratively reweighted, Tukey weights) to the ground points near the object's footprint,
    then a rotation about the origin's vertical and a shift make that plane z = 0. The frame is
    returned unchanged when there are too few table points or the tilt found is implausibly
    large (more than ``max_tilt_deg``: those points are not the table).
    """
    try:
        selected = object_points(points, errors, frame, max_error_px=max_error_px)
    except RefineError:
        return frame, 0.0
    ground = selected.ground
    lo, hi = selected.points[:, :2].min(axis=0), selected.points[:, :2].max(axis=0)
    # the object's own lowest points lie at the table's height too, but SfM is least sure of
    # them (edges, grazing views): only the table beyond the footprint counts
    pad = 0.05 * (hi - lo)
    outside = ~np.all((ground[:, :2] > lo - pad) & (ground[:, :2] < hi + pad), axis=1)
    table = ground[outside]
    if len(table) < min_points:
        return frame, 0.0
    centre = (lo + hi) / 2
    design = np.column_stack([table[:, 0] - centre[0], table[:, 1] - centre[1], np.ones(len(table))])
    weights = np.ones(len(table))
    coef = np.zeros(3)
    for _ in range(10):
        w = np.sqrt(weights)
        coef = np.linalg.lstsq(design * w[:, None], table[:, 2] * w, rcond=None)[0]
        residual = table[:, 2] - design @ coef
        spread = 4.685 * max(1.4826 * float(np.median(np.abs(residual))), 1e-9)
        weights = np.where(np.abs(residual) < spread, (1 - (residual / spread) ** 2) ** 2, 0.0)
        if weights.sum() < min_points:
            return frame, 0.0
    a, b, c = coef
    normal = np.array([-a, -b, 1.0]) / np.sqrt(a * a + b * b + 1.0)
    tilt = float(np.degrees(np.arccos(np.clip(normal[2], -1.0, 1.0))))
    if tilt > max_tilt_deg:
        return frame, 0.0
    # the minimal rotation taking the table's normal to z, about a point of the table under the
    # object's centre: that point keeps its place, the table becomes z = 0
    anchor = np.array([centre[0], centre[1], c])
    axis = np.cross(normal, [0.0, 0.0, 1.0])
    sin, cos = float(np.linalg.norm(axis)), float(normal[2])
    if sin < 1e-12:
        rotation = np.eye(3)
    else:
        k = axis / sin
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rotation = np.eye(3) + sin * cross + (1 - cos) * cross @ cross
    # x' = Rc (x_world − anchor) + (anchor_x, anchor_y, 0), x_world = s R (x − o)
    shift = anchor - rotation.T @ np.array([anchor[0], anchor[1], 0.0])
    levelled = replace(
        frame,
        rotation=rotation @ frame.rotation,
        origin=frame.origin + frame.rotation.T @ shift / frame.scale,
    )
    return levelled, tilt
