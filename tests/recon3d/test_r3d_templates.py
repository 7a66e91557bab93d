"""Every template family against its analytic volume and bounding box (within 0.5 %)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import REL, polygon_area, spec, template
from vlserve.recon3d import SpecError, compile_spec
from vlserve.recon3d.templates.gear import gear_outline

PI = math.pi


def _check(
    part: dict[str, Any], volume: float, extents: tuple[float, float, float], units: str = "mm"
) -> Any:
    model = compile_spec(spec(part, units=units))
    mm = {"mm": 1.0, "cm": 10.0}[units]  # the compiled model is always in mm
    assert model.volume == pytest.approx(volume * mm**3, rel=REL)
    assert model.extents == pytest.approx(np.array(extents) * mm, rel=REL)
    assert model.watertight and model.bodies == 1
    return model


def test_flange_defaults_and_notes() -> None:
    model = _check(
        template("f", "flange"), PI * 40**2 * 10 - PI * 10**2 * 10 - 6 * PI * 4**2 * 10, (80, 80, 10)
    )
    assert model.genus == 7
    assert any("bolt_circle_diameter = 60 (75 % of diameter)" in n for n in model.notes)


def test_flange_hex_bore_and_hub() -> None:
    hex_area = 6 * 10**2 * math.tan(PI / 6)
    flat = template(
        "f",
        "flange",
        diameter=80,
        thickness=10,
        bore_shape="hex",
        bore_size=20,
        bolt_count=6,
        bolt_diameter=8,
        bolt_circle_diameter=60,
    )
    _check(flat, PI * 1600 * 10 - hex_area * 10 - 6 * PI * 16 * 10, (80, 80, 10))
    hub = template(
        "f",
        "flange",
        diameter=100,
        thickness=10,
        hub_diameter=40,
        hub_height=15,
        bore_size=20,
        bolt_count=4,
        bolt_diameter=10,
        bolt_circle_diameter=75,
    )
    _check(hub, PI * 2500 * 10 + PI * 400 * 15 - PI * 100 * 25 - 4 * PI * 25 * 10, (100, 100, 25))
    _check(
        template("f", "flange", diameter=8, thickness=1), PI * 16 - PI - 6 * PI * 0.16, (8, 8, 1), units="cm"
    )


def _impeller_volume(
    d: float, h: float, hub: float, n: int, t: float, curvature: float, plate: float, bore: float
) -> float:
    r, rh = d / 2, hub / 2
    # centre line θ(r) = -c (r - rh) / (r_tip - rh): arc length ∫ sqrt(1 + (r θ')²) dr
    c = math.radians(curvature) / (r - rh)
    rr = np.linspace(rh, r, 4001)
    length = float(np.trapezoid(np.sqrt(1 + (rr * c) ** 2), rr))
    blades = n * t * length * (h - plate)  # a strip of width t around a curve has area t · length
    return PI * r**2 * plate + PI * rh**2 * (h - plate) + blades - PI * (bore / 2) ** 2 * h


@pytest.mark.parametrize("curvature", [0.0, 30.0, -45.0])
def test_impeller_blades_back_plate_and_bore(curvature: float) -> None:
    params = {
        "diameter": 200,
        "height": 40,
        "hub_diameter": 50,
        "blade_count": 5,
        "blade_thickness": 4,
        "curvature": curvature,
        "back_plate_thickness": 6,
        "bore_size": 20,
    }
    volume = _impeller_volume(200, 40, 50, 5, 4, curvature, 6, 20)
    _check(template("i", "impeller", **params), volume, (200, 200, 40))


def test_impeller_hex_bore_and_defaults() -> None:
    model = compile_spec(spec(template("i", "impeller", blade_count=5, diameter=200, bore_shape="hex")))
    assert model.extents == pytest.approx([200, 200, 40], rel=REL)
    assert model.genus == 1
    assert any("hub_diameter = 50 (25 % of diameter)" in n for n in model.notes)


def test_spur_gear_involute_profile() -> None:
    teeth, module = 20, 2.0
    outline = gear_outline(teeth, module, 20)
    # the tooth is exactly half the circular pitch thick on the pitch circle
    angles = np.linspace(0, 2 * PI, 7200, endpoint=False)
    pitch = np.column_stack([20 * np.cos(angles), 20 * np.sin(angles)])
    inside = MplPath(outline).contains_points(pitch)
    assert inside.mean() == pytest.approx(0.5, abs=0.01)
    model = _check(
        template("g", "spur_gear", teeth=teeth, module=module, thickness=10, bore_size=8),
        polygon_area(outline.tolist()) * 10 - PI * 16 * 10,
        (44, 44, 10),
    )
    assert model.genus == 1
    # outer diameter sets the module
    od = compile_spec(spec(template("g", "spur_gear", teeth=30, outer_diameter=64, bore_shape="none")))
    assert od.extents[:2] == pytest.approx([64, 64], rel=REL)


def test_bracket_with_holes_and_gusset() -> None:
    L, H, W, t, d = 60.0, 50.0, 40.0, 5.0, 6.0
    plain = W * t * (L + H - t) - 2 * 2 * PI * (d / 2) ** 2 * t
    _check(
        template("b", "bracket", length=L, height=H, width=W, thickness=t, hole_diameter=d, holes_per_leg=2),
        plain,
        (L, W, H),
    )
    g = 0.4 * (min(L, H) - t)
    _check(
        template(
            "b",
            "bracket",
            length=L,
            height=H,
            width=W,
            thickness=t,
            hole_diameter=d,
            holes_per_leg=1,
            gusset=True,
        ),
        W * t * (L + H - t) - 2 * PI * 9 * t + g * g / 2 * t,
        (L, W, H),
    )


def test_enclosure_box_open_closed_with_cable_hole() -> None:
    L, W, H, w = 100.0, 60.0, 40.0, 2.0
    _check(
        template("e", "enclosure_box", length=L, width=W, height=H, wall_thickness=w),
        L * W * H - (L - 2 * w) * (W - 2 * w) * (H - w),
        (L, W, H),
    )
    _check(
        template(
            "e",
            "enclosure_box",
            length=L,
            width=W,
            height=H,
            wall_thickness=w,
            open_top=False,
            cable_hole_diameter=10,
        ),
        L * W * H - (L - 2 * w) * (W - 2 * w) * (H - 2 * w) - PI * 25 * w,
        (L, W, H),
    )


def test_table_square_and_round_legs() -> None:
    L, W, H, tt, s = 120.0, 60.0, 75.0, 3.0, 5.0
    _check(
        template("t", "table", length=L, width=W, height=H, top_thickness=tt, leg_size=s),
        L * W * tt + 4 * s * s * (H - tt),
        (L, W, H),
        units="cm",
    )
    _check(
        template("t", "table", length=L, width=W, height=H, top_thickness=tt, leg_size=s, leg_shape="round"),
        L * W * tt + 4 * PI * (s / 2) ** 2 * (H - tt),
        (L, W, H),
        units="cm",
    )


def test_chair() -> None:
    sw, sd, sh, st, bh, bt, ls = 450.0, 420.0, 460.0, 30.0, 400.0, 25.0, 35.0
    params = {
        "seat_width": sw,
        "seat_depth": sd,
        "seat_height": sh,
        "seat_thickness": st,
        "back_height": bh,
        "back_thickness": bt,
        "leg_size": ls,
    }
    _check(
        template("c", "chair", **params),
        sw * sd * st + 4 * ls * ls * (sh - st) + sw * bt * bh,
        (sw, sd, sh + bh),
    )


def test_shelf_with_and_without_back() -> None:
    w, d, h, n, t, b = 800.0, 300.0, 1800.0, 5, 18.0, 5.0
    inner = w - 2 * t
    _check(
        template(
            "s", "shelf", width=w, depth=d, height=h, shelf_count=n, board_thickness=t, back_thickness=b
        ),
        2 * t * d * h + n * inner * (d - b) * t + inner * b * h,
        (w, d, h),
    )
    _check(
        template(
            "s", "shelf", width=w, depth=d, height=h, shelf_count=3, board_thickness=t, back_panel=False
        ),
        2 * t * d * h + 3 * inner * d * t,
        (w, d, h),
    )


def test_template_placement_pattern_and_mirror() -> None:
    leg = {
        **template("t", "table", length=100, width=50, height=70, top_thickness=5, leg_size=5),
        "position": [100, 0, 0],
        "mirror": ["yz"],
        "rotation": [0, 0, 90],
    }
    single = 100 * 50 * 5 + 4 * 25 * 65
    model = compile_spec(spec(leg))
    assert model.volume == pytest.approx(2 * single, rel=REL)
    assert model.extents == pytest.approx([250, 100, 70], rel=REL)


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (template("f", "flange", diameter=80, bolt_circle_diameter=78), "params.bolt_circle_diameter"),
        (template("f", "flange", diameter=80, bore_size=85), "params.bore_size"),
        (template("f", "flange", bolt_count=40, bolt_diameter=8), "params.bolt_count"),
        (template("f", "flange", diameter=80, hub_diameter=90), "params.hub_diameter"),
        (template("i", "impeller", height=10, back_plate_thickness=12), "params.back_plate_thickness"),
        (template("i", "impeller", hub_diameter=30, bore_size=40), "params.bore_size"),
        (template("g", "spur_gear", teeth=10, module=1, bore_size=9), "params.bore_size"),
        (template("b", "bracket", thickness=70), "params.thickness"),
        (template("b", "bracket", hole_diameter=50), "params.hole_diameter"),
        (template("e", "enclosure_box", length=10, wall_thickness=6), "params.wall_thickness"),
        (template("t", "table", length=100, width=20, leg_size=15), "params.leg_size"),
        (template("c", "chair", seat_height=20, seat_thickness=30), "params.seat_thickness"),
        (template("s", "shelf", height=100, shelf_count=10, board_thickness=18), "params.shelf_count"),
    ],
)
def test_inconsistent_parameters_name_the_field(part: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(spec(part))
    assert info.value.path == f'parts[0] (id="{part["id"]}").{field}'
