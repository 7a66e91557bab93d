"""Synthetic data for the refinement tests: specs, perturbed specs, and points sampled on truth."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d import compile_spec
from vlserve.testing.refine_objects import BLOCK, BRACKET, FLANGE

__all__ = ["BLOCK", "BRACKET", "FLANGE", "perturbed", "ring", "seen_points", "size_of", "surface_points"]

def perturbed(spec: dict[str, Any], factors: dict[str, float]) -> dict[str, Any]:
    """A copy of ``spec`` with ``{"part.field": factor}`` applied to sizes/params (and positions
    ``part.position.z``)."""
    out = copy.deepcopy(spec)
    parts = {p["id"]: p for p in out["parts"]}
    for name, factor in factors.items():
        pid, field = name.split(".", 1)
        part = parts[pid]
        if field.startswith("position."):
            k = "xyz".index(field[-1])
            part["position"][k] *= factor
        elif "size" in part:
            part["size"][field] *= factor
        else:
            part["params"][field] *= factor
    return out


def surface_points(
    spec: dict[str, Any], n: int, *, noise: float, yaw: float, shift: tuple[float, float], seed: int = 0
) -> NDArray[np.float64]:
    """(m, 3) points on the spec's surface as a camera ring would see it (no downward faces),
    standing on z = 0, turned by ``yaw`` and moved by ``shift``, with Gaussian ``noise`` (mm)."""
    model = compile_spec(spec)
    rng = np.random.default_rng(seed)
    tri = model.vertices[model.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(normals, axis=1)
    up = normals[:, 2] / np.maximum(2 * area, 1e-12) > -0.5
    prob = np.where(up, area, 0.0)
    face = rng.choice(len(tri), n, p=prob / prob.sum())
    a, b = rng.random(n), rng.random(n)
    fold = a + b > 1
    a[fold], b[fold] = 1 - a[fold], 1 - b[fold]
    t = tri[face]
    points = t[:, 0] + (t[:, 1] - t[:, 0]) * a[:, None] + (t[:, 2] - t[:, 0]) * b[:, None]
    points[:, 2] -= model.bounds[0][2]
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(points @ rotation.T + [shift[0], shift[1], 0.0] + rng.normal(0, noise, points.shape))


def size_of(spec: dict[str, Any], name: str) -> float:
    """The value of ``part.field`` in a spec dict."""
    pid, field = name.split(".", 1)
    part = next(p for p in spec["parts"] if p["id"] == pid)
    if field.startswith("position."):
        return float(part["position"]["xyz".index(field[-1])])
    return float((part.get("size") or part["params"])[field])


def ring(n: int, distance: float, elevation_deg: float = 35.0) -> NDArray[np.float64]:
    """(n, 3) camera centres on a ring around the origin's vertical axis, looking down."""
    azimuth = np.linspace(0, 2 * np.pi, n, endpoint=False) + 0.1
    e = np.radians(elevation_deg)
    return np.stack(
        [
            distance * np.cos(e) * np.cos(azimuth),
            distance * np.cos(e) * np.sin(azimuth),
            np.full(n, distance * np.sin(e)),
        ],
        axis=1,
    )


def seen_points(
    spec: dict[str, Any], n: int, cameras: NDArray[np.float64], *, noise: float, seed: int = 0
) -> tuple[NDArray[np.float64], list[NDArray[np.int64]]]:
    """Points on the spec's surface (standing on z = 0, unmoved) as the ``cameras`` see them:
    only points some camera sees (front-facing, not hidden by the object itself), each with the
    indices of the cameras that see it, plus Gaussian ``noise`` (mm)."""
    from vlserve.recon3d.refine.sightlines import inside_lengths, ray_caster

    model = compile_spec(spec)
    vertices = model.vertices - [0.0, 0.0, model.bounds[0][2]]
    rng = np.random.default_rng(seed)
    tri = vertices[model.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(normals, axis=1)
    unit = normals / np.maximum(2 * area, 1e-12)[:, None]
    face = rng.choice(len(tri), 4 * n, p=area / area.sum())
    a, b = rng.random(len(face)), rng.random(len(face))
    fold = a + b > 1
    a[fold], b[fold] = 1 - a[fold], 1 - b[fold]
    t = tri[face]
    points = t[:, 0] + (t[:, 1] - t[:, 0]) * a[:, None] + (t[:, 2] - t[:, 0]) * b[:, None]
    caster = ray_caster(vertices, model.faces)
    seen = np.zeros((len(points), len(cameras)), dtype=bool)
    for k, c in enumerate(cameras):
        facing = (np.einsum("ij,ij->i", unit[face], c - points)) > 0
        clear = inside_lengths(caster, unit, np.repeat(c[None], len(points), axis=0), points, 0.05) < 1e-6
        seen[:, k] = facing & clear
    keep = np.flatnonzero(seen.sum(axis=1) >= 2)[:n]
    observers = [np.flatnonzero(seen[i]) for i in keep]
    return points[keep] + rng.normal(0, noise, (len(keep), 3)), observers
