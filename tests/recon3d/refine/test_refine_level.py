"""Levelling the world frame on the table around the object (``points.level_frame``).

A marker's four corners tilt the ground plane by a few tenths of a degree (measured on the
bench's renders: 0.36-0.49°); the model stands on that ground, so every height came out about
half a millimetre short. The table points around the object fix the plane where it stands.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from vlserve.recon3d.refine.points import level_frame, object_points  # noqa: E402
from vlserve.recon3d.refine.scale import WorldFrame  # noqa: E402


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """World points (mm): a textured table (z = 0, 150 mm around) and a 60×40×20 box on it."""
    table = np.column_stack([rng.uniform(-75, 75, 3000), rng.uniform(-75, 75, 3000), np.zeros(3000)])
    table = table[~((np.abs(table[:, 0]) < 30) & (np.abs(table[:, 1]) < 20))]
    top = np.column_stack([rng.uniform(-30, 30, 800), rng.uniform(-20, 20, 800), np.full(800, 20.0)])
    side = np.column_stack([np.full(400, 30.0), rng.uniform(-20, 20, 400), rng.uniform(0, 20, 400)])
    points = np.vstack([table, top, side])
    points += rng.normal(0, 0.1, points.shape)
    # 2 % gross outliers, as SfM leaves some
    bad = rng.choice(len(points), len(points) // 50, replace=False)
    points[bad] += rng.normal(0, 5, (len(bad), 3))
    return points, np.full(len(points), 0.5)


def _tilted_frame(degrees: float, lift: float) -> WorldFrame:
    """A frame whose ground is the true table turned ``degrees`` about y and lifted by ``lift`` mm;
    reconstruction units are mm/2 (scale 2), its origin somewhere else."""
    a = np.radians(degrees)
    tilt = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    origin = np.array([3.0, -4.0, 1.0])
    # x_world = 2 · tilt (x_rec − origin) − lift ẑ: written as scale · R (x − o')
    return WorldFrame(tilt, origin + tilt.T @ np.array([0, 0, lift]) / 2.0, 2.0, True, "test")


def test_a_tilted_marker_frame_is_levelled_on_the_table() -> None:
    rng = np.random.default_rng(3)
    world, errors = _scene(rng)
    frame = _tilted_frame(0.5, 0.4)
    # the reconstruction points that this frame maps to a tilted world: x_rec = R⁻¹(...)
    true_frame = WorldFrame(np.eye(3), np.array([3.0, -4.0, 1.0]), 2.0, True, "truth")
    reconstruction = world / true_frame.scale + true_frame.origin
    before = object_points(reconstruction, errors, frame)
    # tilted by 0.5° and lifted by 0.4 mm: the table is off z = 0 (0.65 mm at its far edge)
    assert abs(np.median(frame.apply(reconstruction)[:100, 2])) > 0.05
    levelled, tilt = level_frame(frame, reconstruction, errors)
    assert tilt == pytest.approx(0.5, abs=0.03)
    out = levelled.apply(reconstruction)
    table = out[np.abs(world[:, 2]) < 0.5]
    assert abs(float(np.median(table[:, 2]))) < 0.02
    # the box's top is 20 mm above the table everywhere: its far and near ends alike
    top = out[np.abs(world[:, 2] - 20) < 0.5]
    for end in (top[:, 0] > 20, top[:, 0] < -20):
        assert float(np.median(top[end, 2])) == pytest.approx(20.0, abs=0.05)
    assert len(object_points(reconstruction, errors, levelled).points) >= 0.95 * len(before.points)


def test_no_table_around_leaves_the_frame_alone() -> None:
    rng = np.random.default_rng(4)
    world, errors = _scene(rng)
    keep = world[:, 2] > 5  # the object only
    frame = WorldFrame(np.eye(3), np.zeros(3), 1.0, True, "test")
    levelled, tilt = level_frame(frame, world[keep], errors[keep])
    assert tilt == 0.0 and levelled is frame
