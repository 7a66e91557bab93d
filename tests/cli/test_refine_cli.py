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
    assert "--marker-size MM or --known-dimension PARAM=VALUE" in result.output
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
