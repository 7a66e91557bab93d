"""multiview_3d's ``refine`` option over real servers: a job refines, /infer refuses, limits hold.

The photos are ray-cast views of a known object (a block with a boss) beside a 40 mm ArUco marker
(:mod:`vlserve.recon3d.refine.render`). On the tiny model the spec is random, so those jobs assert
the structure and the reporting (refined or not, and why); the job whose engine answers with the
block's own spec (the model is the external boundary there: what it writes is the input under
test) proves a real refinement end to end: SfM in the isolated worker, before/after per
dimension, refined files owned by the key.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("manifold3d")
pytest.importorskip("pycolmap")
pytest.importorskip("cv2")
pytest.importorskip("embreex")  # the renderer without Embree takes minutes

from vlserve.api.app import create_app  # noqa: E402
from vlserve.config import ApiKey, Settings  # noqa: E402
from vlserve.service.auth import hash_key  # noqa: E402
from vlserve.testing import FakeEngine  # noqa: E402
from vlserve.testing.refine_objects import BLOCK  # noqa: E402
from vlserve.testing.server import iter_server  # noqa: E402

ALICE_KEY, BOB_KEY = "vls-refine-alice", "vls-refine-bob"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
MARKER_MM = 40.0
# the model's guess: the right parts, lengths a few per cent off (bench/refine.py measures 10-30 %)
GUESS: dict[str, Any] = {
    **BLOCK,
    "parts": [
        {"id": "base", "shape": "box", "size": {"x": 63, "y": 38, "z": 21}},
        {"id": "boss", "shape": "cylinder", "size": {"diameter": 25, "height": 15}, "position": [8, 0, 18]},
    ],
}
REFINE = {"marker_size_mm": MARKER_MM}
BOARD = {"squares_x": 5, "squares_y": 7, "square_mm": 30, "marker_mm": 22, "dictionary": "DICT_5X5_100"}
TINY_TOKENS = 150


class ScriptedModel(FakeEngine):
    """A model that writes the scripted text even under a JSON schema (test double at the model
    boundary); everything else is :class:`FakeEngine`'s."""

    def _pieces(self, request: Any) -> tuple[list[str], Any]:
        return super()._pieces(replace(request, params=replace(request.params, json_schema=None)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 views of the block at 400×300 around a 40 mm marker (as PNG files)."""
    from vlserve.recon3d import compile_spec
    from vlserve.recon3d.refine.render import as_mesh, render_views, save_views

    vertices, faces = as_mesh(compile_spec(BLOCK))
    _, views = render_views(vertices, faces, 12, width=400, height=300, marker_size=MARKER_MM, closeness=1.25)
    return save_views(views, tmp_path_factory.mktemp("block-views"))


def uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def noise(n: int, size: tuple[int, int] = (160, 120)) -> list[str]:
    out = []
    for seed in range(n):
        buf = io.BytesIO()
        rng = np.random.default_rng(seed)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def settings_for(tmp: Path, privacy: bool = False, **refine: Any) -> Settings:
    keys = [ApiKey(id="alice", sha256=hash_key(ALICE_KEY)).model_dump(),
            ApiKey(id="bob", sha256=hash_key(BOB_KEY)).model_dump()]
    return Settings.model_validate({
        "data_dir": str(tmp / "data"),
        "auth": {"keys": keys},
        "limits": {"max_images": 12, "max_tokens": 2048},
        "jobs": {"sqlite_path": str(tmp / "jobs.sqlite3")},
        "recon3d": {"artifacts_dir": str(tmp / "artifacts"),
                    # small and quick: CI proves the path, bench/refine.py measures accuracy
                    "refine": {"max_features": 1024, "fit_seconds": 5, "fit_evaluations": 30, **refine}},
        "privacy": {"enabled": privacy},
    })


@pytest.fixture(scope="module")
def tiny_server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    settings = settings_for(tmp_path_factory.mktemp("refine-tiny"))
    for url in iter_server(create_app(settings, engine=engine)):
        yield url, settings


@pytest.fixture(scope="module")
def serve_scripted(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Iterator[tuple[str, Settings]]]:
    """A server whose model answers with ``answer`` (a spec) under refine settings ``refine``."""

    def start(answer: dict[str, Any], **refine: Any) -> Iterator[tuple[str, Settings]]:
        settings = settings_for(tmp_path_factory.mktemp("refine-scripted"), **refine)
        for url in iter_server(create_app(settings, engine=ScriptedModel(reply=json.dumps(answer)))):
            yield url, settings

    return start


@pytest.fixture(scope="module")
def scripted_server(serve_scripted: Callable[..., Iterator[tuple[str, Settings]]]) -> Iterator[tuple[str, Settings]]:
    """The model answers with the block's spec, lengths a few per cent off; the fit may take a minute."""
    yield from serve_scripted(GUESS, fit_seconds=60, fit_evaluations=300)


def submit(url: str, body: dict[str, Any], headers: dict[str, str] = ALICE) -> httpx.Response:
    return httpx.post(url + "/jobs", json=body, headers=headers, timeout=60)


def run_job(url: str, body: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    reply = submit(url, body)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["jobs"][0]["id"]
    deadline = time.monotonic() + timeout
    seen: list[float] = []
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", headers=ALICE, timeout=30).json()
        seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            job["progress_seen"] = seen
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def job_body(images: list[str], refine: dict[str, Any] | None = REFINE, **options: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {"max_tokens": 400, "formats": ["stl", "glb"], **options}
    if refine is not None:
        opts["refine"] = refine
    return {"task": "multiview_3d", "images": images, "options": opts}


def artifacts_of(settings: Settings, job: dict[str, Any]) -> list[str]:
    return sorted(p.name for p in (settings.recon3d.artifacts_dir / f"job_{job['id']}").iterdir())


def test_a_refine_job_on_the_tiny_model_reports_what_it_did(tiny_server: tuple[str, Settings],
                                                              photos: list[Path]) -> None:
    url, settings = tiny_server
    # 4 of the views and few tokens (the random spec is cut off and completed): the tiny model
    # writes ~1 token/s on the loaded CI machine, and the full SfM path is the scripted job's test
    job = run_job(url, job_body([uri(p) for p in photos[::3]], max_tokens=100))
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0
    answer = job["result"]["result"]["answer"]
    assert {"spec", "files", "summary", "warnings", "refined_spec", "refine_report", "refined_files"} <= set(answer)
    report = answer["refine_report"]
    if report["refined"]:  # the random spec could be fitted: the whole report, refined files
        assert answer["refined_spec"]["parts"]
        assert len(report["views"]["registered"]) >= 3
        assert {"before", "after"} <= set(report["residuals_mm"])
        assert all({"name", "before", "after"} <= set(p) for p in report["parameters"])
        assert {"stl", "glb", "spec"} == set(answer["refined_files"])
    else:  # or not: the job still delivers the model, says why, with a code
        assert answer["refined_spec"] is None and answer["refined_files"] == {}
        assert report["code"] >= 4000 and report["reason"]
        if "registered" in report["reason"]:  # too few of the 4 views registered: named
            assert report["views"]["photos"] == 4
        assert any(w.startswith("the model was not refined") for w in answer["warnings"])
    # the model's own files stand either way, owned by the key; the photos are gone
    for link in [*answer["files"].values(), *answer["refined_files"].values()]:
        assert httpx.get(url + link, headers=ALICE, timeout=30).status_code == 200
        assert httpx.get(url + link, headers=BOB, timeout=30).status_code == 404
    names = artifacts_of(settings, job)
    assert not any(n.startswith((".refine", "photo")) for n in names), names


def test_too_few_registered_views_still_deliver_the_model(scripted_server: tuple[str, Settings]) -> None:
    url, settings = scripted_server
    job = run_job(url, job_body(noise(3)))
    assert job["status"] == "succeeded", job["error"]
    answer = job["result"]["result"]["answer"]
    report = answer["refine_report"]
    assert report["refined"] is False and report["code"] == 4000
    assert "registered" in report["reason"]
    assert report["views"]["photos"] == 3 and len(report["views"]["unregistered"]) >= 1
    assert set(report["views"]["registered"]) | set(report["views"]["unregistered"]) == {
        "photo_01.png", "photo_02.png", "photo_03.png"}
    assert answer["refined_spec"] is None and "stl" in answer["files"]
    assert any("not refined" in w and "registered" in w for w in answer["warnings"])
    assert not any(n.startswith(".refine") for n in artifacts_of(settings, job))


def test_a_board_job_runs_in_the_worker_and_reports(scripted_server: tuple[str, Settings]) -> None:
    """A ChArUco board crosses the API, the job and the worker process (noise photos: nothing
    registers, so the job delivers the model and says why)."""
    from vlserve.recon3d.refine.options import CharucoSpec
    from vlserve.schemas import RefineOption
    from vlserve.service.refine import scale_of

    assert scale_of(RefineOption.model_validate({"charuco": {**BOARD, "dictionary": "5x5_100"}})) == (
        None, None, CharucoSpec(5, 7, 30.0, 22.0, "DICT_5X5_100"))
    url, _ = scripted_server
    job = run_job(url, job_body(noise(3), {"charuco": BOARD}))
    assert job["status"] == "succeeded", job["error"]
    report = job["result"]["result"]["answer"]["refine_report"]
    assert report["refined"] is False and report["code"] == 4000 and "registered" in report["reason"], report


def test_refine_is_refused_on_infer_with_a_pointer_to_jobs(tiny_server: tuple[str, Settings]) -> None:
    url, _ = tiny_server
    body = job_body(noise(3))
    for path in ("/infer", "/infer_stream"):
        reply = httpx.post(url + path, json=body, headers=ALICE, timeout=60)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == 4000 and "POST /jobs" in reply.json()["msg"]


@pytest.mark.parametrize(("body", "says"), [
    (job_body(noise(3), {"marker_size_mm": -40}), "greater than 0"),
    (job_body(noise(3), {"marker_size_mm": 1e9}), "less than or equal"),
    (job_body(noise(3), {"marker_size_mm": 40, "known_dimension": {"parameter": "base.x", "mm": 60}}),
     "exactly one"),
    (job_body(noise(3), {}), "exactly one"),
    (job_body(noise(3), {"known_dimension": {"parameter": "x=1", "mm": 60}}), "pattern"),
    (job_body(noise(3), {"known_dimension": {"parameter": "base.x", "mm": 0}}), "greater than 0"),
    (job_body(noise(3), {"known_dimension": {"parameter": "   ", "mm": 60}}), "spec length's name"),
    (job_body(noise(3), {"marker_size_mm": 40, "shrink": True}), "not permitted"),
    (job_body(noise(2)), "needs 3 to"),
    ({"task": "captioning", "images": noise(3), "options": {"refine": REFINE}}, "multiview_3d"),
    # a ChArUco board: bounds in the schema, what depends on several fields when the job is submitted
    (job_body(noise(3), {"charuco": {**BOARD, "marker_mm": 30}}), "must be smaller than its square"),
    (job_body(noise(3), {"charuco": {**BOARD, "squares_x": 2}}), "greater than or equal to 3"),
    (job_body(noise(3), {"charuco": {**BOARD, "squares_y": 31}}), "less than or equal to 30"),
    (job_body(noise(3), {"charuco": {**BOARD, "square_mm": 0}}), "greater than 0"),
    (job_body(noise(3), {"charuco": {**BOARD, "square_mm": 100, "squares_x": 25}}), "over 2000 mm long"),
    (job_body(noise(3), {"charuco": {**BOARD, "dictionary": "DICT_9X9_1"}}), "unknown dictionary"),
    (job_body(noise(3), {"charuco": {**BOARD, "squares_x": 12, "squares_y": 12, "dictionary": "DICT_4X4_50"}}),
     "DICT_4X4_50 has only 50"),
    (job_body(noise(3), {"charuco": {**BOARD, "dictionary": "x" * 41}}), "at most 40 characters"),
    (job_body(noise(3), {"charuco": {**BOARD, "legacy": True}}), "not permitted"),
    (job_body(noise(3), {"charuco": {"squares_x": 5, "squares_y": 7}}), "Field required"),
    (job_body(noise(3), {"charuco": BOARD, "marker_size_mm": 40}), "exactly one"),
])
def test_bad_refine_options_are_refused_at_submission(tiny_server: tuple[str, Settings], body: dict[str, Any],
                                                      says: str) -> None:
    url, _ = tiny_server
    reply = submit(url, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == 4000 and says in reply.json()["msg"], reply.json()["msg"]


def test_a_refine_job_measures_the_object(scripted_server: tuple[str, Settings], photos: list[Path]) -> None:
    """The whole path with a spec that matches the photos: SfM in the worker, marker scale, the fit,
    the report, the refined files. Accuracy is bench/refine.py's to measure, not this test's."""
    url, settings = scripted_server
    job = run_job(url, job_body([uri(p) for p in photos]))
    assert job["status"] == "succeeded", job["error"]
    answer = job["result"]["result"]["answer"]
    report = answer["refine_report"]
    assert report["refined"] is True, report
    assert 0.4 in job["progress_seen"]  # reported once the model's files were built, while SfM ran
    assert len(report["views"]["registered"]) >= 8
    assert report["scale"]["metric_marker"] is True
    assert all(v.startswith("photo_") for v in report["views"]["registered"])
    params = {p["name"]: p for p in report["parameters"]}
    assert [params[n]["before"] for n in ("base.x", "base.y", "base.z", "boss.diameter")] == [63, 38, 21, 25]
    assert all(p["after"] > 0 for p in params.values() if p["kind"] == "length")
    assert {"median", "p90"} <= set(report["residuals_mm"]["before"]) & set(report["residuals_mm"]["after"])
    refined = {p["id"]: p for p in answer["refined_spec"]["parts"]}
    assert refined["base"]["size"]["x"] == pytest.approx(params["base.x"]["after"], rel=1e-6)
    # the refined files sit beside the model's, served to their key only
    assert set(answer["refined_files"]) == {"stl", "glb", "spec"}
    assert answer["refined_files"]["stl"].endswith("/refined.stl")
    spec = httpx.get(url + answer["refined_files"]["spec"], headers=ALICE, timeout=30)
    assert spec.status_code == 200 and spec.json()["parts"][0]["size"] == refined["base"]["size"]
    assert httpx.get(url + answer["refined_files"]["stl"], headers=BOB, timeout=30).status_code == 404
    names = artifacts_of(settings, job)
    assert {"model.stl", "refined.stl", "refined.glb", "refined.json", "spec.json"} <= set(names)
    assert not any(n.startswith((".refine", "photo")) for n in names), names


def test_a_refinement_past_its_wall_clock_limit_is_killed_and_the_model_delivered(
        serve_scripted: Callable[..., Iterator[tuple[str, Settings]]], photos: list[Path]) -> None:
    from vlserve.service.refine import refine_pool

    for url, settings in serve_scripted(GUESS, wall_seconds=0.5):
        started = time.monotonic()
        job = run_job(url, job_body([uri(p) for p in photos]))
        assert job["status"] == "succeeded", job["error"]
        answer = job["result"]["result"]["answer"]
        report = answer["refine_report"]
        assert report == {"refined": False, "code": 4013, "reason": report["reason"]}
        assert "recon3d.refine.wall_seconds" in report["reason"]
        assert answer["refined_spec"] is None and {"stl", "glb", "spec"} <= set(answer["files"])
        assert any("not refined" in w for w in answer["warnings"])
        assert time.monotonic() - started < 60  # SfM on 12 photos would take far longer here
        assert refine_pool(settings).pids() == []  # the worker was killed, not left running
        assert not any(n.startswith(".refine") for n in artifacts_of(settings, job))


def test_privacy_mode_refuses_refine_jobs(engine: Any, tmp_path: Path) -> None:
    """Privacy mode keeps nothing: jobs (which store their photos) are refused, /infer refuses refine."""
    settings = settings_for(tmp_path, privacy=True)
    for url in iter_server(create_app(settings, engine=engine)):
        body = job_body(noise(3))
        reply = submit(url, body)
        assert reply.status_code == 403 and reply.json()["code"] == 4030
        reply = httpx.post(url + "/infer", json=body, headers=ALICE, timeout=60)
        assert reply.status_code == 400 and "POST /jobs" in reply.json()["msg"]
    assert not settings.recon3d.artifacts_dir.exists() or not any(settings.recon3d.artifacts_dir.iterdir())


def test_from_images_refines_through_the_same_service_function(tiny_dir: Path, tmp_path: Path) -> None:
    """The CLI with --refine-marker-mm: photos that do not register cost a warning, not the model."""
    from vlserve.cli.main import app

    paths = []
    for i, data in enumerate(noise(3)):
        paths.append(tmp_path / f"view {i}.png")
        paths[-1].write_bytes(base64.b64decode(data.split(",", 1)[1]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["recon3d", "from-images", *map(str, paths), "--model", str(tiny_dir),
                                      "-o", str(out), "--max-tokens", str(TINY_TOKENS), "-f", "stl",
                                      "--refine-marker-mm", "40"])
    assert result.exit_code == 0, result.output
    assert "not refined" in result.output
    answer = json.loads((out / "result.json").read_text())
    report = answer["refine_report"]
    assert report["refined"] is False and "registered" in report["reason"]
    assert set(report["views"]["registered"]) | set(report["views"]["unregistered"]) == {
        "view_0.png", "view_1.png", "view_2.png"}
    assert (out / answer["files"]["stl"]).stat().st_size > 0
    assert not (out / ".refine").exists()
    bad = CliRunner().invoke(app, ["recon3d", "from-images", str(paths[0]), "--model", str(tiny_dir), "-o",
                                   str(out), "--refine-marker-mm", "40", "--refine-known", "base.x=60"])
    assert bad.exit_code == 2 and "exactly one source of scale" in bad.output


def test_photo_names_in_reports_are_safe_and_unique() -> None:
    from vlserve.service.refine import file_names, photo_names

    assert photo_names(3) == ["photo_01.png", "photo_02.png", "photo_03.png"]
    names = file_names([Path("a/front view.jpg"), Path("b/front view.jpg"), Path("../x/../../秘密.JPG")])
    assert names == ["front_view.png", "02_front_view.png", "__.png"]
    assert all("/" not in n for n in names)
