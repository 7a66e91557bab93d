"""STEP export: an exact OCCT B-rep (build123d), re-imported with the analytic volume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import FLANGE, FLANGE_VOLUME, MIXED, REL, spec, template
from vlserve.recon3d import compile_spec, export

bd = pytest.importorskip("build123d", reason="STEP export needs the 'cad' extra (build123d)")


def _reimport(path: Path) -> object:
    return bd.import_step(str(path))


def test_flange_step_has_the_analytic_volume(tmp_path: Path) -> None:
    model = compile_spec(FLANGE)
    solid = _reimport(export(model, tmp_path, ["step"])["step"])
    assert solid.volume == pytest.approx(FLANGE_VOLUME, rel=1e-6)  # exact circles: no faceting
    assert solid.volume == pytest.approx(model.volume, rel=REL)
    box = solid.bounding_box()
    assert pytest.approx((80, 80, 10), rel=1e-6) == (box.size.X, box.size.Y, box.size.Z)


def test_every_shape_op_pattern_and_mirror_agree_with_the_mesh(tmp_path: Path) -> None:
    model = compile_spec(MIXED)
    solid = _reimport(export(model, tmp_path, ["step"])["step"])
    assert solid.volume == pytest.approx(model.volume, rel=REL)


def test_templates_and_units(tmp_path: Path) -> None:
    data = spec(
        template("g", "spur_gear", teeth=12, module=2, thickness=6),
        {**template("t", "table", length=30, width=20, height=20), "position": [0, 0, 14], "op": "union"},
        units="cm",
    )
    model = compile_spec(data)
    solid = _reimport(export(model, tmp_path, ["step"])["step"])
    assert solid.volume == pytest.approx(model.volume, rel=REL)


def test_importing_the_package_does_not_import_build123d() -> None:
    import subprocess

    code = "import sys, vlserve.recon3d; print('build123d' in sys.modules, 'manifold3d' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
