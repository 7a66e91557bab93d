"""Compiled geometry against analytic volumes and bounding boxes (within 0.5 %).

The default 96 segments are used, and compared with the true (continuous) analytic volume: the
faceting error of a 96-gon is 0.07 % in area, well inside the tolerance. Where a test uses fewer
segments it compares against the volume of the polygonal solid instead, which is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import FLANGE, FLANGE_VOLUME, REL, part, polygon_area, spec
from vlserve.recon3d import GeometryError, SpecError, compile_spec


def _check(data: dict[str, Any], volume: float, extents: tuple[float, float, float], **kw: Any) -> Any:
    model = compile_spec(data, **kw)
    assert model.volume == pytest.approx(volume, rel=REL)
    assert model.extents == pytest.approx(np.array(extents), rel=REL, abs=1e-9)
    assert model.watertight
    return model


SHAPES = [
    ({"shape": "box", "size": {"x": 10, "y": 20, "z": 30}}, 6000.0, (10, 20, 30)),
    ({"shape": "cylinder", "size": {"diameter": 40, "height": 10}}, math.pi * 400 * 10, (40, 40, 10)),
    (
        {"shape": "cone", "size": {"bottom_diameter": 40, "top_diameter": 20, "height": 30}},
        math.pi * 30 * (400 + 200 + 100) / 3,
        (40, 40, 30),
    ),
    (
        {"shape": "cone", "size": {"bottom_diameter": 40, "top_diameter": 0, "height": 30}},
        math.pi * 30 * 400 / 3,
        (40, 40, 30),
    ),
    ({"shape": "sphere", "size": {"diameter": 50}}, 4 / 3 * math.pi * 25**3, (50, 50, 50)),
    (
        {"shape": "torus", "size": {"major_diameter": 60, "minor_diameter": 10}},
        2 * math.pi**2 * 30 * 25,
        (70, 70, 10),
    ),
    (
        {"shape": "prism", "size": {"sides": 6, "across_flats": 20, "height": 5}},
        6 * 100 * math.tan(math.pi / 6) * 5,
        (20, 40 / math.sqrt(3), 5),
    ),  # a flat faces +x
    (
        {
            "shape": "extrude",
            "size": {"polygon": [[0, 0], [30, 0], [30, 10], [10, 10], [10, 20], [0, 20]], "height": 4},
        },
        (300 + 100) * 4,
        (30, 20, 4),
    ),
    # a revolved rectangle r 10..20, z 0..5 is a washer: Pappus' theorem
    (
        {"shape": "revolve", "size": {"profile": [[10, 0], [20, 0], [20, 5], [10, 5]]}},
        math.pi * (400 - 100) * 5,
        (40, 40, 5),
    ),
]


@pytest.mark.parametrize(
    ("shape", "volume", "extents"), SHAPES, ids=[f"{s['shape']}{i}" for i, (s, _, _) in enumerate(SHAPES)]
)
def test_every_shape_matches_its_analytic_volume(
    shape: dict[str, Any], volume: float, extents: tuple[float, ...]
) -> None:
    _check(spec({"id": "p", **shape}), volume, extents)  # type: ignore[arg-type]


def test_polygon_winding_and_units() -> None:
    clockwise = [[0, 0], [0, 20], [30, 20], [30, 0]]
    _check(spec(part("p", "extrude", size={"polygon": clockwise, "height": 2})), 1200, (30, 20, 2))
    # 2 cm cube = 20 mm; internal unit is mm
    _check(spec(part("c", "box", size={"x": 2, "y": 2, "z": 2}), units="cm"), 8000, (20, 20, 20))
    _check(spec(part("c", "box", size={"x": 1, "y": 1, "z": 1}), units="in"), 25.4**3, (25.4, 25.4, 25.4))
    _check(spec(part("c", "box", size={"x": 0.1, "y": 0.1, "z": 0.1}), units="m"), 1e6, (100, 100, 100))


def test_low_segment_count_matches_the_polygonal_volume_exactly() -> None:
    n = 12
    polygon_area_ = n / 2 * 10**2 * math.sin(2 * math.pi / n)
    model = compile_spec(spec(part("c", "cylinder", size={"diameter": 20, "height": 3})), segments=n)
    assert model.volume == pytest.approx(polygon_area_ * 3, rel=1e-9)
    with pytest.raises(GeometryError, match="segments"):
        compile_spec(FLANGE, segments=4)


def test_rotation_is_extrinsic_xyz_and_position_is_the_centre() -> None:
    box = {"x": 10, "y": 20, "z": 30}
    # extrinsic: about x first (y<->z), then about z (x<->y) → 30 × 10 × 20; intrinsic would give 20 × 30 × 10
    m = _check(spec(part("b", "box", size=box, rotation=[90, 0, 90], position=[1, 2, 3])), 6000, (30, 10, 20))
    assert m.bounds.mean(axis=0) == pytest.approx([1, 2, 3])
    _check(
        spec(part("b", "box", size={"x": 10, "y": 10, "z": 1}, rotation=[0, 0, 45])),
        100,
        (10 * 2**0.5, 10 * 2**0.5, 1),
    )
    _check(
        spec(part("c", "cylinder", size={"diameter": 10, "height": 40}, rotation=[0, 90, 0])),
        math.pi * 25 * 40,
        (40, 10, 10),
    )


def test_the_issue_flange_example() -> None:
    model = _check(FLANGE, FLANGE_VOLUME, (80, 80, 10))
    assert model.genus == 7  # the bore and six bolt holes go through
    assert model.bodies == 1 and not model.warnings
    # every triangle knows its part; hole walls keep the hole's colour, the bore's walls the disc's
    leaves = {leaf.part_id: leaf.index for leaf in model.leaves}
    assert set(np.unique(model.face_leaf)) == set(leaves.values())
    colors = model.face_colors()
    holes = colors[model.face_leaf == leaves["bolt_holes"]]
    assert (holes[:, :3] == [255, 0, 0]).all()
    steel = colors[model.face_leaf == leaves["disc"]][0]
    assert (colors[model.face_leaf == leaves["bore"]] == steel).all()


def test_ops_union_subtract_intersect() -> None:
    a = part("a", "box", size={"x": 20, "y": 20, "z": 20})
    b = part("b", "box", size={"x": 20, "y": 20, "z": 20}, position=[10, 0, 0])
    _check(spec(a, b), 12000, (30, 20, 20))
    _check(spec(a, {**b, "op": "subtract"}), 4000, (10, 20, 20))
    _check(spec(a, {**b, "op": "intersect"}), 4000, (10, 20, 20))
    sphere_in_cube = [
        part("c", "box", size={"x": 20, "y": 20, "z": 20}),
        part("s", "sphere", size={"diameter": 20}, op="intersect"),
    ]
    _check(spec(*sphere_in_cube), 4 / 3 * math.pi * 1000, (20, 20, 20))


def test_patterns_and_mirrors() -> None:
    small = {"x": 4, "y": 4, "z": 2}
    circ = part("p", "box", size=small, pattern={"kind": "circular", "count": 4, "radius": 20})
    _check(spec(circ), 4 * 32, (44, 44, 2))
    about_x = part(
        "p",
        "box",
        size=small,
        pattern={"kind": "circular", "count": 4, "radius": 20, "axis": "x", "start_angle": 90},
    )
    _check(spec(about_x), 4 * 32, (4, 44, 44))  # the copies turn with the pattern
    linear = part(
        "p",
        "cylinder",
        size={"diameter": 10, "height": 2},
        pattern={"kind": "linear", "count": 3, "step": [20, 0, 5]},
    )
    _check(spec(linear), 3 * math.pi * 25 * 2, (50, 10, 12))
    mirrored = part("m", "box", size=small, position=[10, 10, 0], mirror=["yz", "xz"])
    _check(spec(mirrored), 4 * 32, (24, 24, 2))
    # a rotated, mirrored wedge: the copy is the reflection (not a rotated duplicate)
    wedge = part(
        "w",
        "extrude",
        size={"polygon": [[0, 0], [10, 0], [0, 5]], "height": 2},
        position=[5, 0, 0],
        mirror="yz",
    )
    m = _check(spec(wedge), 2 * 25 * 2, (30, 5, 2))
    assert m.bodies == 2


def test_geometry_errors_and_warnings() -> None:
    base = part("a", "box", size={"x": 10, "y": 10, "z": 10})
    with pytest.raises(GeometryError, match=r'parts\[1\] \(id="big"\)\.op: subtract removes the whole solid'):
        compile_spec(spec(base, part("big", "box", size={"x": 20, "y": 20, "z": 20}, op="subtract")))
    with pytest.raises(GeometryError, match=r'parts\[1\] \(id="far"\)\.op: intersect does not overlap'):
        compile_spec(
            spec(base, part("far", "sphere", size={"diameter": 2}, position=[50, 0, 0], op="intersect"))
        )
    with pytest.raises(GeometryError, match=r"size\.polygon: the polygon has zero area"):
        compile_spec(spec(part("flat", "extrude", size={"polygon": [[0, 0], [1, 1], [2, 2]], "height": 1})))
    with pytest.raises(GeometryError, match="crosses itself"):
        compile_spec(
            spec(part("bow", "extrude", size={"polygon": [[0, 0], [10, 10], [10, 0], [0, 10]], "height": 1}))
        )
    with pytest.raises(GeometryError, match="zero area"):
        compile_spec(spec(part("line", "revolve", size={"profile": [[0, 0], [5, 0], [10, 0]]})))
    assert issubclass(GeometryError, SpecError)
    miss = compile_spec(
        spec(base, part("miss", "sphere", size={"diameter": 2}, position=[50, 0, 0], op="subtract"))
    )
    assert any('id="miss"' in w and "no effect" in w for w in miss.warnings)
    apart = compile_spec(spec(base, part("b", "sphere", size={"diameter": 2}, position=[50, 0, 0])))
    assert any("2 separate bodies" in w for w in apart.warnings)
    odd = compile_spec(spec({**base, "color": "plaid", "material": "unobtainium"}))
    assert any(".color: unknown colour" in w for w in odd.warnings)
    assert any(".material: unknown material" in w for w in odd.warnings)


def test_colours_names_hex_and_materials() -> None:
    model = compile_spec(
        spec(
            part("a", "box", size={"x": 10, "y": 10, "z": 10}, color="dark grey"),
            part("b", "box", size={"x": 10, "y": 10, "z": 10}, position=[10, 0, 0], color="#0f0"),
            part(
                "c",
                "box",
                size={"x": 10, "y": 10, "z": 10},
                position=[20, 0, 0],
                material="Brushed Aluminium",
            ),
        )
    )
    colours = {leaf.part_id: leaf.color for leaf in model.leaves}
    assert colours["b"] == (0.0, 1.0, 0.0, 1.0)
    assert colours["a"][0] == pytest.approx(0x4D / 255)
    assert model.leaves[2].material.name == "aluminium"
    assert polygon_area([[0, 0], [1, 0], [0, 1]]) == 0.5
