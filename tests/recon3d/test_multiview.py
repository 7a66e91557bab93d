"""Photos → spec → files: input checks, repairs, and the whole path on the tiny model (CLI and API)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from vlserve.recon3d import load_spec
from vlserve.recon3d.repair import compile_with_repair
from vlserve.tasks.multiview_3d.photos import check_photos


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_photo_checks() -> None:
    sharp = photo(1600, 1200)
    blurred = photo(400, 300, 1).filter(ImageFilter.GaussianBlur(8))
    glare = Image.new("RGB", (300, 200), (255, 255, 255))
    checked = check_photos([sharp, blurred, glare], ["front", "side"])
    assert checked.images[0].size == (1024, 768)
    assert checked.images[1].size == (400, 300)
    text = "\n".join(checked.warnings)
    assert "view 1 (front) was downscaled to 1024x768" in text
    assert "view 2 (side): the photo looks blurred" in text
    assert "view 3: the photo looks over-exposed" in text
    assert "view 1 (front): the photo looks blurred" not in text


def cylinder(op: str = "union", **size: float) -> dict[str, Any]:
    return {"id": "c", "shape": "cylinder", "op": op, "size": {"diameter": 20, "height": 10, **size}}


def test_repairs_are_reported() -> None:
    spec, model, warnings = compile_with_repair({"name": "x", "parts": [cylinder("subtract")]})
    assert spec.parts[0].op == "union" and model.watertight and "made the first part a union" in warnings[0]
    bad_torus = {"id": "t", "shape": "torus", "size": {"major_diameter": 10, "minor_diameter": 30}}
    spec, model, warnings = compile_with_repair({"name": "x", "parts": [cylinder(), bad_torus]})
    assert len(spec.parts) == 1 and 'dropped parts[1] (id="t")' in warnings[0]
    assert model.volume == pytest.approx(np.pi * 10**2 * 10, rel=5e-3)
    spec, model, warnings = compile_with_repair({"name": "x", "parts": [bad_torus]})
    assert spec.parts[0].shape == "box" and model.volume == pytest.approx(30**3, rel=1e-6)
    assert "replaced by the box around it" in warnings[0]


def test_from_images_cli_on_tiny_model(tiny_dir: Path, tmp_path: Path) -> None:
    from vlserve.cli.main import app

    paths = []
    for i, label in enumerate(("front", "side", "top")):
        paths.append(tmp_path / f"{label}.jpg")
        photo(1300, 1000, i).save(paths[-1])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["recon3d", "from-images", *map(str, paths), "--labels", "front,side,top",
                                      "--model", str(tiny_dir), "-o", str(out), "--max-tokens", "700"])
    assert result.exit_code == 0, result.output
    answer = json.loads((out / "result.json").read_text())
    spec = load_spec(json.loads((out / "spec.json").read_text()))
    assert spec.parts
    for fmt in ("glb", "stl", "obj", "ply"):
        mesh = trimesh.load(out / answer["files"][fmt], force="mesh")
        assert mesh.volume == pytest.approx(answer["summary"]["volume_mm3"] * (1e-9 if fmt == "glb" else 1), rel=1e-3)
    for fmt in ("scad", "py", "png"):
        assert (out / answer["files"][fmt]).stat().st_size > 0
    # STEP is written, or (a CAD kernel past recon3d.export_seconds) the answer says why not
    assert "step" in answer["files"] or any("STEP export" in w for w in answer["warnings"])
    assert any("downscaled" in w for w in answer["warnings"])


def test_multiview_task_through_the_api(open_server_3d: str) -> None:
    images = []
    for i in range(2):
        buf = io.BytesIO()
        photo(320, 240, 10 + i).save(buf, "PNG")
        images.append("data:image/png;base64," + __import__("base64").b64encode(buf.getvalue()).decode())
    response = httpx.post(open_server_3d + "/infer", json={"task": "multiview_3d", "images": images,
                                                           "labels": ["front", "top"],
                                                           "options": {"max_tokens": 700}}, timeout=600)
    assert response.status_code == 200, response.text
    answer = response.json()["result"]["answer"]
    load_spec(answer["spec"])
    # STEP is asked for per request (options.formats); the API's default is recon3d.default_formats
    assert "step" not in answer["files"] and {"glb", "stl", "png", "spec"} <= set(answer["files"])
    glb = httpx.get(open_server_3d + answer["files"]["glb"], timeout=30)
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    scene = trimesh.load(io.BytesIO(glb.content), file_type="glb")
    assert len(scene.geometry) >= 1
    assert httpx.get(open_server_3d + "/artifacts/../etc/passwd").status_code == 404
    missing = httpx.get(open_server_3d + answer["files"]["glb"].replace("model.glb", "nope.glb"))
    assert missing.status_code == 404 and missing.json()["code"] == 4040


@pytest.fixture(scope="module")
def open_server_3d(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.api.helpers import make_settings, run_server
    from vlserve.api.app import create_app

    tmp = tmp_path_factory.mktemp("r3d-api")
    settings = make_settings(tmp, recon3d={"artifacts_dir": str(tmp / "artifacts")})
    yield from run_server(create_app(settings, engine=engine))


def test_cut_off_answers_are_completed_or_refused_with_4000(tmp_path: Path) -> None:
    from tests.recon3d.helpers import MIXED
    from vlserve.errors import RequestError
    from vlserve.tasks import TaskInput
    from vlserve.tasks.multiview_3d import Multiview3D

    text = json.dumps(MIXED)
    task, built, refused = Multiview3D(), 0, 0
    for cut in (10, 40, 90, 160, 260, 420, 700, len(text) - 30, len(text)):
        inp = TaskInput(artifacts_dir=tmp_path / str(cut), artifacts_url="/a/", formats=["stl"])
        try:
            answer = task.answer(text[:cut], inp)
        except RequestError as err:  # a clear refusal, never a traceback or a 5000
            assert err.code == 4000 and "max_tokens" in err.message, err.message
            refused += 1
            continue
        built += 1
        assert answer["files"]["stl"] == "/a/model.stl" and answer["summary"]["watertight"]
        assert (cut == len(text)) != any("cut off at max_tokens" in w for w in answer["warnings"])
    assert refused >= 1 and built >= 5
    with pytest.raises(RequestError, match="no object spec"):
        task.answer("I cannot see any object in these photos.", TaskInput(artifacts_dir=tmp_path))


def test_unknown_formats_are_refused_before_the_model_runs() -> None:
    from vlserve.errors import RequestError
    from vlserve.tasks import TaskInput
    from vlserve.tasks.multiview_3d import Multiview3D

    with pytest.raises(RequestError, match="unknown export format"):
        Multiview3D().prepare(TaskInput(images=[photo(64, 64)], formats=["fbx"]))


def test_from_text_with_a_model_on_tiny(tiny_dir: Path, tmp_path: Path) -> None:
    from vlserve.cli.main import app

    out = tmp_path / "text"
    result = CliRunner().invoke(app, ["recon3d", "from-text", "an 80 mm flange with six 8 mm bolt holes",
                                      "--model", str(tiny_dir), "-o", str(out), "--max-tokens", "300",
                                      "-f", "stl"])
    assert "Traceback" not in result.output
    if result.exit_code == 0:  # the random model's spec was built (possibly repaired)
        answer = json.loads((out / "result.json").read_text())
        assert (out / answer["files"]["stl"]).stat().st_size > 0
    else:  # or refused with a message
        assert result.exit_code == 2 and "error" in result.output, result.output


def test_a_lone_unbuildable_outline_becomes_the_solid_around_it() -> None:
    bow_tie = {"id": "r", "shape": "revolve", "size": {"profile": [[0, 0], [10, 10], [10, 0], [0, 10]]}}
    spec, model, warnings = compile_with_repair({"name": "x", "parts": [bow_tie]})
    assert spec.parts[0].shape == "cylinder" and "replaced by the cylinder around it" in warnings[0]
    assert model.volume == pytest.approx(np.pi * 10**2 * 10, rel=5e-3)
    fin = {"id": "e", "shape": "extrude", "size": {"polygon": [[0, 0], [4, 3], [4, 0], [0, 3]], "height": 2}}
    spec, model, _ = compile_with_repair({"name": "x", "parts": [fin]})
    assert spec.parts[0].shape == "box" and model.volume == pytest.approx(4 * 3 * 2)
