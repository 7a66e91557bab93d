"""Exported files re-load with the compiled volume; OpenSCAD and Blender rebuild the same solid."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import FLANGE, MIXED, REL, spec, template
from vlserve.errors import RequestError
from vlserve.recon3d import CompiledModel, compile_spec, export, export_files
from vlserve.recon3d.exporters import parse_formats

trimesh = pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def flange() -> CompiledModel:
    return compile_spec(FLANGE)


@pytest.fixture(scope="module")
def mesh_files(flange: CompiledModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export(flange, tmp_path_factory.mktemp("mesh"), ["glb", "stl", "obj", "ply", "png"])


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply"])
def test_mesh_formats_reload_watertight_with_the_same_volume(
    fmt: str, flange: CompiledModel, mesh_files: dict[str, Path]
) -> None:
    loaded = trimesh.load(mesh_files[fmt], force="mesh")
    # trimesh's OBJ loader splits vertices per material group and its texture visuals then block
    # merging; the geometry alone (re-merged by position) is the watertight solid we wrote
    mesh = trimesh.Trimesh(loaded.vertices, loaded.faces)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(flange.volume, rel=1e-6)
    assert mesh.extents == pytest.approx(flange.extents, rel=1e-6)


def test_ply_and_obj_keep_part_colours(mesh_files: dict[str, Path]) -> None:
    ply = trimesh.load(mesh_files["ply"])
    red = (ply.visual.face_colors[:, :3] == [255, 0, 0]).all(axis=1)
    assert 0 < red.sum() < len(red)  # the bolt holes are red, the rest steel
    mtl = mesh_files["obj"].with_suffix(".mtl").read_text()
    assert "Kd 1.0000 0.0000 0.0000" in mtl and mtl.count("newmtl") == 3
    assert "g bolt_holes" in mesh_files["obj"].read_text()


def test_glb_is_a_scene_of_coloured_parts_in_metres_y_up(
    flange: CompiledModel, mesh_files: dict[str, Path]
) -> None:
    scene = trimesh.load(mesh_files["glb"])
    assert set(scene.geometry) == {"disc", "bore", "bolt_holes"}
    total = trimesh.util.concatenate(list(scene.dump()))
    total.merge_vertices()
    assert total.volume * 1e9 == pytest.approx(flange.volume, rel=1e-5)
    assert total.extents == pytest.approx([0.08, 0.01, 0.08], rel=1e-6)  # y is up
    color = scene.geometry["bolt_holes"].visual.material.baseColorFactor
    assert list(color[:3]) == [255, 0, 0]
    raw = mesh_files["glb"].read_bytes()
    header = json.loads(raw[20 : 20 + int.from_bytes(raw[12:16], "little")])
    assert header["scenes"][0]["extras"]["vlserve"]["spec"]["name"] == "flange"


def test_png_preview(mesh_files: dict[str, Path]) -> None:
    from PIL import Image

    image = Image.open(mesh_files["png"])
    assert image.size == (900, 900)
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels < 200).any() and (pixels == 255).all(axis=2).mean() > 0.3  # drawn, on white


def test_format_names(tmp_path: Path, flange: CompiledModel) -> None:
    assert parse_formats("GLB, stl,,stl") == ["glb", "stl"]
    assert len(parse_formats("all")) == 8
    with pytest.raises(RequestError, match="unknown export format"):
        parse_formats("glb,fbx")
    files = export_files(flange, tmp_path / "new" / "dir", "scad,py", basename="part")
    assert [f.path.name for f in files] == ["part.scad", "part_blender.py"]
    assert all(f.bytes > 0 and f.seconds >= 0 for f in files)


def _stl_volume(path: Path) -> float:
    return float(trimesh.load(path, force="mesh").volume)


OPENSCAD_SPECS = {
    "flange": (FLANGE, 32),
    # template, mirror, units in cm, sphere, rotation
    "table": (
        spec(
            template("t", "table", length=120, width=60, height=75),
            {"id": "s", "shape": "sphere", "size": {"diameter": 20}, "position": [30, 0, 40]},
            {
                "id": "w",
                "shape": "extrude",
                "size": {"polygon": [[0, 0], [10, 0], [0, 8]], "height": 2},
                "position": [40, 20, 40],
                "rotation": [90, 0, 30],
                "mirror": ["yz"],
            },
            units="cm",
        ),
        24,
    ),
}


@pytest.mark.skipif(
    shutil.which("openscad") is None, reason="the openscad binary is not installed (apt-get install openscad)"
)
@pytest.mark.parametrize("name", list(OPENSCAD_SPECS))
def test_openscad_renders_the_same_volume(name: str, tmp_path: Path) -> None:
    data, segments = OPENSCAD_SPECS[name]
    model = compile_spec(data, segments=segments)
    scad = export(model, tmp_path, ["scad"])["scad"]
    out = tmp_path / "openscad.stl"
    subprocess.run(["openscad", "-o", str(out), str(scad)], check=True, capture_output=True, timeout=120)
    assert _stl_volume(out) == pytest.approx(model.volume, rel=REL)


@pytest.mark.skipif(
    shutil.which("blender") is None, reason="the blender binary is not installed (apt-get install blender)"
)
def test_blender_script_rebuilds_the_same_volume(tmp_path: Path) -> None:
    model = compile_spec(MIXED, segments=24)
    script = export(model, tmp_path, ["py"])["py"]
    out = tmp_path / "blender.stl"
    subprocess.run(
        [
            "blender",
            "--background",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
            str(script),
            "--",
            "--export",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert _stl_volume(out) == pytest.approx(model.volume, rel=REL)


def test_blender_script_is_valid_python_carrying_the_plan(tmp_path: Path) -> None:
    model = compile_spec(spec(template("c", "chair"), units="mm"))
    source = export(model, tmp_path, ["py"])["py"].read_text()
    compile(source, "model_blender.py", "exec")
    plan: Any = json.loads(source.split("PLAN = ", 1)[1].split("\n\nif __name__", 1)[0])
    assert plan[0]["template"] == "chair" and [c["id"] for c in plan[0]["children"]] == [
        "c.seat",
        "c.legs",
        "c.backrest",
    ]
    assert len(plan[0]["children"][1]["matrices"]) == 4  # four mirrored legs
