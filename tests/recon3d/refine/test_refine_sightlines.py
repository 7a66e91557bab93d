"""Free space along sight lines: how much of a camera → point segment runs inside a mesh."""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("scipy")

from vlserve.recon3d.refine.sightlines import (  # noqa: E402
    Sightlines,
    inside_lengths,
    penetration_depths,
    ray_caster,
)


def test_inside_length_of_segments_through_a_box() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))  # ±5 mm around the origin
    caster = ray_caster(box.vertices, box.faces)
    origins = np.array([[0.0, 0, 50], [0, 0, 50], [20, 0, 50], [4.9, 0, 50], [0, 0, 50], [-50, 2, 1]])
    targets = np.array([[0.0, 0, 0], [0, 0, -50], [20, 0, -50], [4.9, 0, -50], [0, 0, 5.5], [50, 2, 1]])
    got = inside_lengths(caster, box.face_normals, origins, targets, margin=1.0)
    # ends inside (5 mm in, less the 1 mm margin); straight through (10); beside it (0); through
    # near a wall (10); stops short of the top face (0); sideways through (10)
    np.testing.assert_allclose(got, [4.0, 10.0, 0.0, 10.0, 0.0, 10.0], atol=1e-6)


def test_inside_length_shrinks_continuously_as_a_face_slides_off() -> None:
    # the fit's finite differences need a length that goes to 0 smoothly, not a jump
    lengths = []
    for x in np.linspace(6.0, 8.0, 9):
        box = trimesh.creation.box((10.0, 10.0, 10.0))
        caster = ray_caster(box.vertices, box.faces)
        # a slanted segment that grazes the box's +x edge
        got = inside_lengths(caster, box.face_normals, np.array([[x - 6, 0, 11.0]]), np.array([[x + 6, 0, -11.0]]), 0)
        lengths.append(float(got[0]))
    steps = np.abs(np.diff(lengths))
    assert lengths[0] > 0 and lengths[-1] == 0.0
    assert steps.max() < 0.5 * lengths[0]


def test_penetration_is_how_far_a_face_must_move_not_the_length_inside() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))  # ±5 mm around the origin
    caster = ray_caster(box.vertices, box.faces)
    # a line that grazes the top +x edge 0.1 mm low at 10° elevation (a silhouette feature
    # triangulated on the table behind): ~0.6 mm inside along its length, 0.1 mm deep
    a = np.radians(10.0)
    d = np.array([np.cos(a), 0.0, -np.sin(a)])
    edge = np.array([5.0, 0.0, 4.9])
    origin, target = edge - 60 * d, edge + 60 * d
    length = inside_lengths(caster, box.face_normals, origin[None], target[None], 0.0)[0]
    depth = penetration_depths(caster, box.face_normals, origin[None], target[None], 0.0)[0]
    assert length > 0.5
    # enters through the top (|n·d| = sin 10°), leaves by the +x face (cos 10°): the top must drop 0.1 mm
    assert depth == pytest.approx(length * np.sin(a)) and depth == pytest.approx(0.1)
    # straight down through the middle: the whole length (either face moves 10 mm to clear it);
    # beside the box: 0; ending inside: the depth below the face it entered by, less the margin
    origins = np.array([[0.0, 0, 50], [20, 0, 50], [0, 0, 50]])
    targets = np.array([[0.0, 0, -50], [20, 0, -50], [0, 0, 0]])
    got = penetration_depths(caster, box.face_normals, origins, targets, margin=1.0)
    np.testing.assert_allclose(got, [10.0, 0.0, 4.0], atol=1e-6)


def test_one_sightline_per_observation() -> None:
    cameras = np.array([[0.0, 0, 10], [10, 0, 10], [0, 10, 10]])
    points = np.array([[1.0, 1, 0], [2, 2, 0]])
    lines = Sightlines.from_tracks(cameras, points, [np.array([0, 2]), np.array([1])])
    assert len(lines) == 3
    np.testing.assert_array_equal(lines.origins, cameras[[0, 2, 1]])
    np.testing.assert_array_equal(lines.targets, points[[0, 0, 1]])
    assert len(lines.subset(2)) == 2 and len(lines + lines) == 6
