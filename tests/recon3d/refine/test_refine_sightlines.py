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
    surface_normals,
    through_observed_surface,
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


def test_points_seen_twice_give_no_sight_lines_and_a_point_counts_its_least_blocked_view() -> None:
    cameras = np.array([[0.0, 0, 10], [10, 0, 10], [0, 10, 10]])
    points = np.array([[1.0, 1, 0], [2, 2, 0], [3, 3, 0]])
    lines = Sightlines.from_tracks(cameras, points, [np.array([0, 1, 2]), np.array([0, 2]), np.array([1, 2, 0])],
                                   min_views=3)
    # two rays always meet where a pair's epipolar geometry allows: only the three-photo points
    assert len(lines) == 6 and lines.points == 2
    np.testing.assert_array_equal(lines.targets[3:], points[[2, 2, 2]])
    np.testing.assert_array_equal(lines.per_point_min(np.array([5.0, 0.0, 2.0, 3.0, 1.0, 4.0])), [0.0, 1.0])
    both = lines + Sightlines.from_tracks(cameras, points[:1], [np.array([1, 2])])
    assert both.points == 3 and list(both.groups) == [0, 0, 0, 1, 1, 1, 2, 2]
    # a subset keeps whole points: all of a point's views or none
    for seed in range(4):
        part = both.subset(5, seed=seed)
        sizes = np.bincount(part.groups)
        assert 0 < len(part) <= 5 and sorted(sizes) in ([2], [3], [2, 3])
        for k in range(part.points):  # each point's rows: one target, all its views
            assert len({tuple(t) for t in part.targets[part.groups == k]}) == 1


def test_a_false_view_through_the_box_is_outvoted_by_the_views_that_see_the_point() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))  # ±5 mm around the origin
    caster = ray_caster(box.vertices, box.faces)
    # a table point beside the box (z = −5, x = 8): two photos on its side see it over nothing,
    # the third's view runs through the box (a false match in SfM's track)
    point = np.array([[8.0, 0.0, -5.0]])
    cameras = np.array([[30.0, 0.0, 20.0], [20.0, 20.0, 20.0], [-30.0, 0.0, 20.0]])
    lines = Sightlines.from_tracks(cameras, point, [np.array([0, 1, 2])], min_views=3)
    depth = penetration_depths(caster, box.face_normals, lines.origins, lines.targets, 0.5)
    assert depth[0] == 0.0 and depth[1] == 0.0 and depth[2] > 1.0
    assert lines.per_point_min(depth)[0] == 0.0
    # the same point under a box grown to x = ±9: every view is blocked
    big = trimesh.creation.box((18.0, 10.0, 10.0))
    caster = ray_caster(big.vertices, big.faces)
    blocked = penetration_depths(caster, big.face_normals, lines.origins, lines.targets, 0.5)
    assert lines.per_point_min(blocked)[0] > 0.1


def test_an_object_point_counts_only_the_solid_in_front_of_it() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))  # ±5 mm around the origin
    caster = ray_caster(box.vertices, box.faces)
    # a point on the top face that SfM put 0.4 mm inside: its own distance is the point term's
    # business, not free space; a point on the far side seen *through* the box (a too-large
    # model): the solid in front of it counts
    origins = np.array([[0.0, 0.0, 50.0], [-50.0, 0.0, 0.0]])
    targets = np.array([[0.0, 0.0, 4.6], [8.0, 0.0, 0.0]])
    plain = penetration_depths(caster, box.face_normals, origins, targets, 0.1)
    cut = penetration_depths(caster, box.face_normals, origins, targets, 0.1, np.array([True, True]))
    np.testing.assert_allclose(plain, [0.3, 10.0], atol=1e-6)
    np.testing.assert_allclose(cut, [0.0, 10.0], atol=1e-6)


def test_a_table_point_seen_through_an_observed_surface_is_found() -> None:
    rng = np.random.default_rng(0)
    # the observed surface of a 20 mm cube standing on z = 0: its top and four sides
    top = np.column_stack([rng.uniform(-10, 10, 400), rng.uniform(-10, 10, 400), np.full(400, 20.0)])
    side = np.column_stack([np.full(200, 10.0), rng.uniform(-10, 10, 200), rng.uniform(0, 20, 200)])
    points = np.vstack([top, side, side * [-1, 1, 1], side[:, [1, 0, 2]], side[:, [1, 0, 2]] * [1, -1, 1]])
    points += rng.normal(0, 0.05, points.shape)
    normals = surface_normals(points, points * [3.0, 3.0, 1.0] + [0.0, 0.0, 40.0])
    assert np.median(normals[:400, 2]) > 0.99 and np.median(normals[400:600, 0]) > 0.99  # edges mix faces
    camera = np.array([60.0, 0.0, 60.0])
    lines = Sightlines(
        np.repeat(camera[None], 3, axis=0),
        np.array(
            [
                [-20.0, 0.0, 0.0],  # behind the cube: the line runs under its top and through its side
                [-47.0, 0.0, 0.0],  # farther: grazes the top edge 0.75 mm over, outside its points
                [20.0, 5.0, 0.0],  # in front of it
            ]
        ),
    )
    got = through_observed_surface(lines, points, normals, radius=2.0, tolerance=0.5)
    assert list(got) == [True, False, False]
    # a point every view of which is dropped, with all its other views
    both = Sightlines.from_tracks(np.array([camera, [0.0, 60.0, 60.0]]), lines.targets[:2], [np.array([0, 1])] * 2)
    rest = both.without_points(np.array([True, False, False, False]))
    assert rest.points == 1 and len(rest) == 2 and np.all(rest.targets == lines.targets[1])

