"""Placement of a part as a list of 4×4 affine matrices: position, rotation, pattern, mirror.

Pure numpy; every backend (manifold3d, OpenSCAD, Blender, build123d) consumes the same matrices,
so a pattern or mirror means the same thing everywhere. Conventions are documented in
:mod:`vlserve.recon3d.spec`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.spec import CircularPattern, LinearPattern, PartBase

Matrix = NDArray[np.float64]
"""(4, 4) float64 affine transform acting on column vectors."""

AXES: dict[str, tuple[float, float, float]] = {
    "x": (1.0, 0.0, 0.0),
    "y": (0.0, 1.0, 0.0),
    "z": (0.0, 0.0, 1.0),
}
#: the direction a circular pattern offsets its copies in, per axis (right-handed cycle x→y→z→x)
REFERENCE: dict[str, tuple[float, float, float]] = {
    "z": (1.0, 0.0, 0.0),
    "x": (0.0, 1.0, 0.0),
    "y": (0.0, 0.0, 1.0),
}
#: normal of each mirror plane
PLANE_NORMALS: dict[str, tuple[float, float, float]] = {
    "yz": (1.0, 0.0, 0.0),
    "xz": (0.0, 1.0, 0.0),
    "xy": (0.0, 0.0, 1.0),
}


def translation(offset: tuple[float, float, float] | list[float] | NDArray[np.float64]) -> Matrix:
    """(4, 4) translation by ``offset`` (3,)."""
    m = np.eye(4)
    m[:3, 3] = np.asarray(offset, dtype=float)
    return m


def axis_rotation(axis: str, degrees: float) -> Matrix:
    """(4, 4) right-handed rotation about the world ``axis`` ("x", "y" or "z")."""
    a = math.radians(degrees)
    c, s = _cos_sin(a, degrees)
    m = np.eye(4)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def euler_xyz(rotation: list[float] | tuple[float, float, float]) -> Matrix:
    """(4, 4) extrinsic XYZ rotation in degrees: ``Rz @ Ry @ Rx``."""
    rx, ry, rz = rotation
    return axis_rotation("z", rz) @ axis_rotation("y", ry) @ axis_rotation("x", rx)


def mirror_matrix(plane: str) -> Matrix:
    """(4, 4) reflection through the world ``plane`` ("xy", "yz" or "xz") through the origin."""
    n = np.asarray(PLANE_NORMALS[plane])
    m = np.eye(4)
    m[:3, :3] -= 2.0 * np.outer(n, n)
    return m


def scaling(factor: float) -> Matrix:
    """(4, 4) uniform scale."""
    m = np.eye(4) * factor
    m[3, 3] = 1.0
    return m


def part_matrices(part: PartBase) -> list[Matrix]:
    """Every placed copy of ``part``: list of (4, 4) matrices, base copy first.

    A circular pattern maps copy i to ``T(position) · R_axis(start + i·360/count) ·
    T(radius · reference) · R(rotation)``; a linear one to ``T(i·step) · T(position) · R(rotation)``;
    each mirror plane then adds the reflection of every copy so far.
    """
    rotate = euler_xyz(part.rotation)
    place = translation(part.position)
    pattern = part.pattern
    if isinstance(pattern, CircularPattern):
        offset = translation(np.asarray(REFERENCE[pattern.axis]) * pattern.radius)
        mats = [
            place
            @ axis_rotation(pattern.axis, pattern.start_angle + i * 360.0 / pattern.count)
            @ offset
            @ rotate
            for i in range(pattern.count)
        ]
    elif isinstance(pattern, LinearPattern):
        step = np.asarray(pattern.step, dtype=float)
        mats = [translation(step * i) @ place @ rotate for i in range(pattern.count)]
    else:
        mats = [place @ rotate]
    for plane in part.mirror:
        mirror = mirror_matrix(plane)
        mats = mats + [mirror @ m for m in mats]
    return mats


def is_mirroring(matrix: Matrix) -> bool:
    """True when the (4, 4) ``matrix`` flips handedness (negative determinant)."""
    return bool(np.linalg.det(matrix[:3, :3]) < 0)


def _cos_sin(radians: float, degrees: float) -> tuple[float, float]:
    # Exact values at multiples of 90° keep axis-aligned parts exactly axis-aligned, so
    # coplanar faces stay coplanar and CSG does not create slivers.
    quarter = degrees / 90.0
    if quarter.is_integer():
        return [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(quarter) % 4]
    return math.cos(radians), math.sin(radians)
