"""Scale from a printed ChArUco board: real pycolmap SfM on rendered photos of the block beside a board.

The renderer prints the board with OpenCV's own ``CharucoBoard.generateImage``; the cameras that
took the photos are known, so the metric frame the board gives is checked against them (camera
to camera distances and heights above the table, in mm), and the whole refinement against the
block's true dimensions, as the marker path is in ``test_refine_photos.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("manifold3d")
pytest.importorskip("pycolmap")
pytest.importorskip("cv2")
pytest.importorskip("embreex")  # the renderer without Embree takes minutes

from tests.recon3d.refine.helpers import BLOCK, perturbed, size_of  # noqa: E402
from vlserve.recon3d import compile_spec  # noqa: E402
from vlserve.recon3d.refine import RefineResult, ScaleError, refine  # noqa: E402
from vlserve.recon3d.refine.charuco import charuco_frame, measure_board  # noqa: E402
from vlserve.recon3d.refine.fit import FitOptions  # noqa: E402
from vlserve.recon3d.refine.options import CharucoSpec, parse_charuco  # noqa: E402
from vlserve.recon3d.refine.pipeline import RefineOptions, format_report  # noqa: E402
from vlserve.recon3d.refine.render import View, as_mesh, render_views, save_views  # noqa: E402
from vlserve.recon3d.refine.sfm import SfmOptions  # noqa: E402
from vlserve.recon3d.validation import load_spec  # noqa: E402

# 55 x 55 mm of squares beside the 60 x 40 x 20 mm block: 16 inner corners, 120 pairs
BOARD = CharucoSpec(5, 5, 11.0, 8.5, "DICT_4X4_50")
GUESS = perturbed(BLOCK, {"base.x": 1.2, "base.y": 0.82, "base.z": 1.15, "boss.diameter": 0.8, "boss.height": 1.25})
OPTIONS = RefineOptions(sfm=SfmOptions(max_features=2048), fit=FitOptions(yaw_starts=4, seconds=120))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[View]]:
    vertices, faces = as_mesh(compile_spec(BLOCK))
    _, views = render_views(vertices, faces, 16, width=400, height=300, charuco=BOARD, closeness=0.95)
    return save_views(views, tmp_path_factory.mktemp("charuco")), views


@pytest.fixture(scope="module")
def refined(scene: tuple[list[Path], list[View]]) -> RefineResult:
    return refine(GUESS, scene[0], charuco=BOARD, options=OPTIONS)


def test_the_board_gives_the_metric_frame_within_one_per_cent(
    scene: tuple[list[Path], list[View]], refined: RefineResult
) -> None:
    paths, views = scene
    sfm = refined.sfm
    assert sfm is not None
    frame = charuco_frame(sfm, BOARD)
    assert frame.metric and frame.board and frame.corners >= 12
    truth = {p.name: -v.cam_from_world[:, :3].T @ v.cam_from_world[:, 3] for p, v in zip(paths, views, strict=True)}
    measured = frame.apply(np.array([v.center for v in sfm.views]))
    true = np.array([truth[v.name] for v in sfm.views])
    i, j = np.triu_indices(len(true), k=1)
    ratios = np.linalg.norm(measured[i] - measured[j], axis=1) / np.linalg.norm(true[i] - true[j], axis=1)
    assert abs(np.median(ratios) - 1) < 0.01, np.median(ratios)
    # the board's plane is the table: the cameras' heights above it, in mm
    assert np.median(np.abs(measured[:, 2] / true[:, 2] - 1)) < 0.01
    # many pairs agree closely (the spread the report warns about beyond 3 %)
    board = measure_board(sfm, BOARD)
    assert board.pairs >= 66 and board.spread < 0.03


def test_refinement_with_the_board_recovers_the_dimensions(refined: RefineResult) -> None:
    report = refined.report
    assert refined.refined and len(report["views"]["registered"]) >= 10
    scale = report["scale"]
    assert scale["charuco"] is True and scale["metric_marker"] is True and scale["corners"] >= 12
    assert scale["source"].startswith(f"ChArUco 5x5:11:8.5:DICT_4X4_50: {scale['corners']} corners in ")
    for name in ("base.x", "base.y", "base.z", "boss.diameter"):
        before = abs(size_of(GUESS, name) / size_of(BLOCK, name) - 1)
        after = abs(size_of(refined.spec, name) / size_of(BLOCK, name) - 1)
        assert before > 0.14
        assert after < 0.03, format_report(report)  # as the marker path's CI test
    assert compile_spec(refined.spec).watertight
    assert "scale: ChArUco 5x5:11:8.5:DICT_4X4_50" in format_report(report)


def test_a_board_not_in_the_photos_is_a_scale_error(scene: tuple[list[Path], list[View]],
                                                    refined: RefineResult) -> None:
    assert refined.sfm is not None
    other = parse_charuco("5x5:11:8.5:DICT_6X6_250")  # the same layout, another dictionary: no marker matches
    with pytest.raises(ScaleError, match=r"no ChArUco board 5x5:11:8.5:DICT_6X6_250 was found") as err:
        charuco_frame(refined.sfm, other)
    assert err.value.code == 4000 and err.value.details["param"] == "charuco"
    # a refinement that was asked for the wrong board gives back the spec, and says why
    quick = RefineOptions(sfm=SfmOptions(max_features=1024), fit=OPTIONS.fit)
    result = refine(GUESS, scene[0][::2], charuco=other, options=quick, on_failure="keep")
    assert not result.refined and result.fit is None
    assert "no ChArUco board 5x5:11:8.5:DICT_6X6_250 was found" in (result.reason or "")
    assert result.report["code"] == 4000
    assert result.spec == load_spec(GUESS).model_dump(mode="json", exclude_none=True)


def test_exactly_one_source_of_scale_with_a_board(scene: tuple[list[Path], list[View]]) -> None:
    for kwargs in ({"marker_size_mm": 40.0}, {"known_dimension": "base.x=60"}):
        with pytest.raises(ScaleError, match="exactly one source of scale"):
            refine(GUESS, scene[0], charuco=BOARD, options=OPTIONS, **kwargs)  # type: ignore[arg-type]
