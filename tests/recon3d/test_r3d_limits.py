"""Every schema-valid spec compiles within the limits or is refused: up front (4000), or stopped (4013).

The slow specs here would each run for minutes without the limits (measured: 100 separate
subtracted holes ≈ 30 s on the 2-core CI machine, 1000 patterned ones ≈ 90 s, STEP of 360 rotated
boxes did not finish in minutes); with them, each test takes seconds.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import FLANGE, part, spec
from vlserve.config import Recon3D
from vlserve.errors import GeometryLimitError, RequestError
from vlserve.recon3d import compile_spec, load_spec, spec_json_schema
from vlserve.recon3d.budget import BuildLimits, SpecTooLargeError
from vlserve.recon3d.checks import stl_is_watertight
from vlserve.recon3d.spec import TEMPLATE_NAMES
from vlserve.tasks.multiview_3d.building import build, has_cad


def many_holes(count: int, *, separate: bool) -> dict[str, Any]:
    """A long plate with ``count`` small holes: one patterned part, or one part per hole."""
    plate = part("plate", "box", size={"x": 2000, "y": 200, "z": 5})
    hole = {"shape": "cylinder", "size": {"diameter": 2, "height": 6}, "op": "subtract"}
    if not separate:
        return spec(plate, {"id": "holes", **hole, "position": [-995, 0, 0],
                            "pattern": {"kind": "linear", "count": count, "step": [1990 / count, 0, 0]}})
    return spec(plate, *({"id": f"h{i}", **hole, "position": [-995 + i * 1990 / count, 0, 0]}
                         for i in range(count)))


def test_a_spec_that_expands_too_far_is_refused_before_any_csg(tmp_path: Path) -> None:
    # 100 parts x 1000 copies: schema-valid, and days of CSG without the limit
    huge = spec(part("plate", "box", size={"x": 100, "y": 100, "z": 5}),
                *(dict(part(f"h{i}", "cylinder", size={"diameter": 1, "height": 6}, op="subtract"),
                       pattern={"kind": "linear", "count": 1000, "step": [0.05, 0, 0]}) for i in range(100)))
    load_spec(huge)  # valid
    start = time.perf_counter()
    with pytest.raises(SpecTooLargeError) as caught:
        build(huge, tmp_path, ["stl"], Recon3D())
    assert time.perf_counter() - start < 2  # counted from the spec, before any plan or CSG
    assert caught.value.code == 4000 and "recon3d.max_primitives" in caught.value.message
    assert "100001 placed primitives" in caught.value.message
    assert not list(tmp_path.iterdir())
    # the triangle estimate: few primitives, but each a 1024-segment torus
    tori = spec(dict(part("t", "torus", size={"major_diameter": 50, "minor_diameter": 5}),
                     pattern={"kind": "circular", "count": 10, "radius": 100}))
    with pytest.raises(SpecTooLargeError, match="recon3d.max_triangles"):
        compile_spec(tori, segments=1024, limits=BuildLimits(max_triangles=1_000_000))


def test_a_compile_past_its_time_limit_is_stopped_with_4013(tmp_path: Path) -> None:
    cfg = Recon3D(compile_seconds=1.0, export_seconds=0.5)
    slow = many_holes(100, separate=True)  # ~30 s of sequential subtracts
    start = time.perf_counter()
    with pytest.raises(GeometryLimitError) as caught:
        build(slow, tmp_path, ["stl"], cfg)
    # 1.5 s of wall time in the worker, plus starting a worker (its imports) on a loaded machine;
    # the same spec runs for minutes without the limit
    assert time.perf_counter() - start < 60
    assert caught.value.code == 4013 and "recon3d.compile_seconds" in caught.value.message
    # the same limits build an ordinary spec: the pool replaced the killed worker
    built = build(FLANGE, tmp_path / "ok", ["stl"], Recon3D(compile_seconds=20, export_seconds=20))
    assert built.summary["watertight"] and built.files["stl"].exists()


@pytest.mark.skipif(not has_cad(), reason="needs the 'cad' extra (build123d)")
def test_a_slow_step_export_degrades_to_mesh_only(tmp_path: Path) -> None:
    # 360 boxes turned 1° apart: a fast mesh, a STEP export that runs for minutes
    fan = spec(part("hub", "cylinder", size={"diameter": 20, "height": 5}),
               dict(part("fins", "box", size={"x": 40, "y": 0.5, "z": 4}, rotation=[0, 0, 0.5]),
                    pattern={"kind": "circular", "count": 360, "radius": 25}))
    built = build(fan, tmp_path, ["glb", "stl", "step"], Recon3D(export_seconds=3))
    assert set(built.files) == {"glb", "stl", "spec"}
    assert not (tmp_path / "model.step").exists()
    assert any("STEP export stopped after 3 s" in w for w in built.warnings)


@pytest.mark.skipif(not has_cad(), reason="needs the 'cad' extra (build123d)")
def test_a_cone_with_equal_diameters_exports_to_step(tmp_path: Path) -> None:
    cone = spec(part("c", "cone", size={"bottom_diameter": 10, "top_diameter": 10, "height": 5}))
    built = build(cone, tmp_path, ["stl", "step"], Recon3D())
    assert built.files["step"].stat().st_size > 0 and not built.warnings
    build123d = pytest.importorskip("build123d")
    solid = build123d.import_step(str(built.files["step"]))
    assert solid.volume == pytest.approx(np.pi * 5**2 * 5, rel=1e-6)


def test_the_schema_forbids_a_negative_revolve_radius() -> None:
    profile = spec_json_schema(compact=True)["$defs"]["RevolveSize"]["properties"]["profile"]
    assert profile["items"]["prefixItems"][0]["minimum"] == 0
    jsonschema = pytest.importorskip("jsonschema")
    bad = spec(part("r", "revolve", size={"profile": [[-1, 0], [5, 0], [5, 5]]}))
    assert not jsonschema.Draft202012Validator(spec_json_schema()).is_valid(bad)
    with pytest.raises(RequestError, match=r"profile\[0\]\[0\]: must be >= 0"):
        load_spec(bad)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_template_is_one_watertight_body_in_every_unit(template: str) -> None:
    for units in ("mm", "cm", "m", "in"):
        model = compile_spec({"name": "x", "units": units, "parts": [{"id": "a", "template": template}]},
                             segments=32)
        assert (model.bodies, model.watertight) == (1, True), (template, units)
    # sizes a user gives in inches, with awkward decimals
    for params in itertools.islice(_inch_params(template), 3):
        model = compile_spec({"name": "x", "units": "in", "parts": [{"id": "a", "template": template,
                                                                     "params": params}]}, segments=32)
        assert model.bodies == 1, (template, params)


def _inch_params(template: str) -> Any:
    sizes = {"chair": ("seat_width", "seat_height", "seat_thickness"), "table": ("length", "height", "top_thickness"),
             "shelf": ("width", "height", "board_thickness")}.get(template)
    if sizes is None:
        yield {}
        return
    for scale in (0.7, 1.13, 1.61):
        yield {name: round(base * scale, 4) for name, base in zip(sizes, (17.7165, 17.7165, 1.1811), strict=True)}


def test_watertightness_is_reported_for_the_written_stl(tmp_path: Path) -> None:
    # a 10 km slab with a 10 µm hole: watertight in float64, vertices merge in float32
    slab = spec(part("slab", "box", size={"x": 10_000, "y": 10, "z": 1}),
                part("pin", "cylinder", size={"diameter": 1e-5, "height": 2}, op="subtract",
                     position=[4999, 0, 0]), units="m")
    built = build(slab, tmp_path, ["stl"], Recon3D(segments=16))
    assert built.summary["watertight"] is True
    assert built.summary["written"]["stl"] == {"watertight": False}
    assert any("not watertight as written" in w for w in built.warnings)
    assert not stl_is_watertight(built.files["stl"])
    # and an ordinary model is watertight as written
    ok = build(FLANGE, tmp_path / "flange", ["stl"], Recon3D())
    assert ok.summary["written"]["stl"] == {"watertight": True}
    assert json.loads(ok.files["spec"].read_text())["name"] == "flange"


def test_parts_that_miss_by_float_rounding_are_welded_into_one_body(tmp_path: Path) -> None:
    from vlserve.recon3d import export

    rng = np.random.default_rng(7)
    welded = 0
    for _ in range(40):  # boxes stacked by a writer who adds decimal inches in floating point
        h1, h2, z1 = (round(float(v), int(d)) for v, d in zip(rng.uniform([0.1, 0.1, -20], [30, 30, 20]),
                                                               rng.integers(1, 5, 3), strict=True))
        stacked = spec(part("a", "box", size={"x": 5, "y": 5, "z": h1}, position=[0, 0, z1]),
                       part("b", "box", size={"x": 3, "y": 3, "z": h2}, position=[0, 0, z1 + h1 / 2 + h2 / 2]),
                       units="in")
        model = compile_spec(stacked, segments=16)
        assert (model.bodies, model.watertight) == (1, True), (h1, h2, z1)
        assert model.volume == pytest.approx((25 * h1 + 9 * h2) * 25.4**3, rel=1e-6)
        if any("welded" in w for w in model.warnings):
            welded += 1
            assert stl_is_watertight(export(model, tmp_path / str(welded), ["stl"])["stl"])
    assert welded >= 3  # without the weld these came apart (9 of 60 in the first measurement)
    apart = compile_spec(spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}),
                              part("b", "box", size={"x": 1, "y": 1, "z": 1}, position=[0, 0, 1.001])))
    assert apart.bodies == 2 and not any("welded" in w for w in apart.warnings)


def test_a_preview_past_its_limit_costs_a_warning_not_the_build(tmp_path: Path) -> None:
    built = build(FLANGE, tmp_path, ["stl", "png"], Recon3D(export_seconds=0.01))
    assert set(built.files) == {"stl", "spec"} and not (tmp_path / "model.png").exists()
    assert any("PNG export stopped after 0.01 s" in w for w in built.warnings)
    ok = build(FLANGE, tmp_path / "ok", ["stl", "png"], Recon3D())
    assert ok.files["png"].stat().st_size > 0 and ok.sizes["png"][0] == ok.files["png"].stat().st_size
