"""The object's points: world-frame SfM points above the ground, largest connected cluster.

The table, the marker and whatever else lies flat are removed by height (a threshold from the
spread of the ground points themselves), isolated outliers by reprojection error, and other
objects by keeping the largest cluster of points linked within a radius.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
) -> ObjectPoints:
    """Select the object's points from all SfM ``points`` (reconstruction frame)."""
    reliable = np.flatnonzero(errors <= max_error_px)
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
