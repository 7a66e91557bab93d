"""``vlserve recon3d refine``: its refusals exit 2 with one line (no traceback) before any SfM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vlserve.cli.main import app

pytest.importorskip("cv2")

SPEC = {
    "spec_version": "1.0",
    "name": "block",
    "parts": [{"id": "b", "shape": "box", "size": {"x": 6, "y": 4, "z": 2}}],
}


def _files(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    import cv2

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    photos = []
    for i in range(n):
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
        photos.append(str(path))
    return spec, photos


def test_refine_without_a_source_of_scale_exits_2(tmp_path: Path) -> None:
    spec, photos = _files(tmp_path, 3)
    result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--marker-size MM, --charuco BOARD or --known-dimension PARAM=VALUE" in result.output
    assert "Traceback" not in result.output


def test_refine_with_too_few_photos_or_an_unknown_dimension_exits_2(tmp_path: Path) -> None:
    spec, photos = _files(tmp_path, 3)
    out = str(tmp_path / "out")
    result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos[:2], "-o", out, "--marker-size", "40"])
    assert result.exit_code == 2 and "2 photos given" in result.output
    result = CliRunner().invoke(
        app, ["recon3d", "refine", str(spec), *photos, "-o", out, "--known-dimension", "b.depth=3"]
    )
    assert result.exit_code == 2 and "not a length of this spec; one of: b.x, b.y, b.z" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("board", "says"), [
    ("5x7:30", "write COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY]"),
    ("5x7:30:30:DICT_5X5_100", "must be smaller than its square"),
    ("2x7:30:22", "squares_x must be a whole number of squares in [3, 30]"),
    ("5x7:30:22:DICT_NOPE", "unknown dictionary"),
    ("12x12:30:22:DICT_4X4_50", "DICT_4X4_50 has only 50"),
])
def test_refine_with_a_board_that_cannot_be_exits_2(tmp_path: Path, board: str, says: str) -> None:
    spec, photos = _files(tmp_path, 3)
    result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos, "-o", str(tmp_path / "out"),
                                      "--charuco", board])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_board_and_a_marker_are_two_sources_of_scale(tmp_path: Path) -> None:
    spec, photos = _files(tmp_path, 3)
    for extra in (["--marker-size", "40"], ["--known-dimension", "b.x=6"]):
        result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos, "-o", str(tmp_path / "out"),
                                          "--charuco", "5x7:30:22", *extra])
        assert result.exit_code == 2 and "give one source of scale" in result.output


def test_from_images_refuses_a_bad_board_before_the_model_loads(tmp_path: Path) -> None:
    _, photos = _files(tmp_path, 3)
    out = tmp_path / "out"
    # --model names nothing that exists: the board is refused first, or this would fail on the model
    for args in (["--refine-charuco", "5x7:30:40"], ["--charuco", "5x7:30:22", "--refine-marker-mm", "40"]):
        result = CliRunner().invoke(app, ["recon3d", "from-images", *photos, "-o", str(out),
                                          "--model", str(tmp_path / "no-such-model"), *args])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "must be smaller than its square" in text or "exactly one source of scale" in text
        assert not out.exists()


def test_a_good_board_reaches_structure_from_motion(tmp_path: Path) -> None:
    # noise photos: the board is accepted and handed on; SfM then registers nothing (exit 2, named)
    import cv2

    pytest.importorskip("pycolmap")
    spec, photos = _files(tmp_path, 3)
    rng = np.random.default_rng(1)
    for path in photos:
        cv2.imwrite(path, (rng.random((96, 128)) * 255).astype(np.uint8))
    result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos, "-o", str(tmp_path / "out"),
                                      "--charuco", "5x7:30:22:dict_5x5_100"])
    assert result.exit_code == 2, result.output
    assert "photos registered" in " ".join(result.output.split()) and "Traceback" not in result.output


def test_photos_too_small_for_sfm_exit_2_not_a_crash(tmp_path: Path) -> None:
    # 8x8 photos used to crash the process inside pycolmap's feature extraction (SIGSEGV)
    pytest.importorskip("pycolmap")
    spec, photos = _files(tmp_path, 3)
    result = CliRunner().invoke(app, ["recon3d", "refine", str(spec), *photos, "-o", str(tmp_path / "out"),
                                      "--charuco", "5x7:30:22"])
    assert result.exit_code == 2, result.output
    assert "8x8 px is too small for structure-from-motion" in " ".join(result.output.split())
