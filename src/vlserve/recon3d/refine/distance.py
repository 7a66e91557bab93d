"""Fast, exact point-to-mesh distances for the fit's inner loop.

Each evaluation of the fit rebuilds the mesh, so the query structure must be cheap to build:
the triangles are subdivided (only for candidate search) until no edge is longer than ``h``,
a KD-tree holds the pieces' centroids, and each query point takes the original triangles of its
``k`` nearest pieces as candidates and measures its **exact** distance to each (closest point on
a triangle, Ericson's region test, vectorised). The minimum over candidates is continuous in the
mesh's vertices, which the finite-difference Jacobian of the fit relies on.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require


class MeshDistance:
    """Unsigned distance from points to a triangle mesh ``(n, 3)`` vertices, ``(m, 3)`` faces."""

    def __init__(self, vertices: NDArray[np.float64], faces: NDArray[np.int64], *, h: float, k: int = 10) -> None:
        spatial = require("scipy.spatial")
        self.triangles = vertices[faces]
        """(m, 3, 3) corner positions"""
        samples, owner = _samples(vertices, faces, h)
        self.owner = owner
        self.tree = spatial.cKDTree(samples)
        self.k = min(k, len(samples))

    def __call__(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n,) distance of each of the (n, 3) points to the surface."""
        return self.closest(points)[1]

    def closest(self, points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(n, 3) closest surface point and (n,) distance for each of the (n, 3) points."""
        closest, distance, _ = self._closest(points)
        return closest, distance

    def signed(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n,) distance of each point to the surface, negative on the inner side of the closest
        triangle (linear in the surface's movement, where the unsigned distance folds at 0)."""
        closest, distance, triangle = self._closest(points)
        tri = self.triangles[triangle]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        side = np.einsum("ij,ij->i", points - closest, normal)
        return np.asarray(np.where(side < 0, -distance, distance))

    def _closest(
        self, points: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
        _, near = self.tree.query(points, k=self.k)
        near = near.reshape(len(points), -1)
        candidates = self.owner[near]  # (n, k) original triangles
        k = candidates.shape[1]
        p = np.repeat(points, k, axis=0)
        c = closest_point_on_triangle(p, self.triangles[candidates.ravel()])
        d = np.linalg.norm(p - c, axis=1).reshape(len(points), k)
        best = d.argmin(axis=1)
        rows = np.arange(len(points))
        return c.reshape(len(points), k, 3)[rows, best], d[rows, best], candidates[rows, best]


def _samples(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], h: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Candidate-search samples, each owned by one triangle: points every ``h`` along each edge
    of each triangle (long thin slivers are found through their edges) plus the centroid."""
    tri = vertices[faces]
    m = len(faces)
    pts = [tri.mean(axis=1)]
    own = [np.arange(m)]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        start, end = tri[:, i], tri[:, j]
        count = np.maximum(1, np.ceil(np.linalg.norm(end - start, axis=1) / h).astype(np.int64))
        owner = np.repeat(np.arange(m), count)
        offsets = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        t = (offsets + 0.5) / count[owner]
        pts.append(start[owner] + (end[owner] - start[owner]) * t[:, None])
        own.append(owner)
    return np.concatenate(pts), np.concatenate(own)


def point_triangle_distance(p: NDArray[np.float64], tri: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n,) distance from each point (n, 3) to its triangle (n, 3, 3)."""
    return np.asarray(np.linalg.norm(p - closest_point_on_triangle(p, tri), axis=1))


def closest_point_on_triangle(p: NDArray[np.float64], tri: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n, 3) closest point of each triangle to each point (Voronoi-region test, vectorised)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp = p - b
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    cp = p - c
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        # inside the face: barycentric coordinates (degenerate faces fall to the edge cases below)
        denom = va + vb + vc
        v = vb / denom
        w = vc / denom
        out = a + ab * v[:, None] + ac * w[:, None]
        # edge BC
        w_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        out[m] = b[m] + (c[m] - b[m]) * w_bc[m, None]
        # edge AC
        w_ac = d2 / (d2 - d6)
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        out[m] = a[m] + ac[m] * w_ac[m, None]
        # edge AB
        v_ab = d1 / (d1 - d3)
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        out[m] = a[m] + ab[m] * v_ab[m, None]
    # vertex regions last: they take precedence
    m = (d6 >= 0) & (d5 <= d6)
    out[m] = c[m]
    m = (d3 >= 0) & (d4 <= d3)
    out[m] = b[m]
    m = (d1 <= 0) & (d2 <= 0)
    out[m] = a[m]
    bad = ~np.isfinite(out).all(axis=1)
    out[bad] = a[bad]
    return out


def _dot(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.einsum("ij,ij->i", x, y)


def surface_samples(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], h: float, max_per_face: int = 64
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Deterministic area samples of a mesh: (s, 3) points, (s,) owning face, (s,) area weight.

    A face gets ``ceil(area / h²)`` points (at most ``max_per_face``) from a fixed
    low-discrepancy pattern folded into the triangle, each weighing its share of the area, so
    sums over samples approximate surface integrals and move smoothly with the vertices.
    """
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    count = np.clip(np.ceil(area / (h * h)), 1, max_per_face).astype(np.int64)
    owner = np.repeat(np.arange(len(faces)), count)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    # R2 sequence (plastic number): well spread for any count
    a = np.mod(0.5 + j * 0.7548776662466927, 1.0)
    b = np.mod(0.5 + j * 0.5698402909980532, 1.0)
    fold = a + b > 1
    a[fold], b[fold] = 1 - a[fold], 1 - b[fold]
    t = tri[owner]
    points = t[:, 0] + (t[:, 1] - t[:, 0]) * a[:, None] + (t[:, 2] - t[:, 0]) * b[:, None]
    return points, owner, (area / count)[owner]
