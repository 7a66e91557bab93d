"""The ``recon3d`` typer app: build, schema, from-text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.recon3d.helpers import FLANGE
from vlserve.cli.recon3d import app

runner = CliRunner()


def test_build_writes_files_and_reports(tmp_path: Path) -> None:
    spec = tmp_path / "flange.json"
    spec.write_text(json.dumps(FLANGE))
    result = runner.invoke(
        app, ["build", str(spec), "-o", str(tmp_path / "out"), "--formats", "glb,stl,scad"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.glb", "model.scad", "model.stl", "spec.json"]
    for word in ("model.glb", "KiB", "watertight", "yes", "43,751.7 mm³"):
        assert word in result.output


def test_bad_spec_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "x",
                "parts": [{"id": "bolt_holes", "shape": "cylinder", "size": {"diameter": 0, "height": 1}}],
            }
        )
    )
    result = runner.invoke(app, ["build", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert 'parts[0] (id="bolt_holes").size.diameter: must be > 0' in result.output
    assert "Traceback" not in result.output
    for args in (
        ["build", str(tmp_path / "missing.json"), "-o", str(tmp_path)],
        ["build", str(bad), "-o", str(tmp_path), "--formats", "fbx"],
    ):
        assert runner.invoke(app, args).exit_code == 2


def test_schema_prints_json() -> None:
    full = runner.invoke(app, ["schema"])
    compact = runner.invoke(app, ["schema", "--compact", "--indent", "0"])
    assert full.exit_code == compact.exit_code == 0
    assert json.loads(full.output)["title"] == "ObjectSpec"
    assert len(compact.output) < len(full.output) and "\n" not in compact.output.strip()


def test_from_text_builds_a_draft(tmp_path: Path) -> None:
    out = tmp_path / "draft"
    result = runner.invoke(
        app, ["from-text", "一个直径80毫米、厚10毫米的法兰，六个8毫米螺栓孔", "-o", str(out), "-f", "stl"]
    )
    assert result.exit_code == 0, result.output
    draft = json.loads((out / "spec.json").read_text())
    assert draft["parts"][0]["params"]["bolt_count"] == 6
    assert (out / "model.stl").exists() and "assumptions" in result.output
    printed = runner.invoke(app, ["from-text", "table 120 x 60 cm, 75 cm high"])
    assert printed.exit_code == 0 and '"length": 1200.0' in printed.output
    assert runner.invoke(app, ["from-text", "something vague"]).exit_code == 2


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vlserve.cli.recon3d", "schema", "--compact"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)["properties"]["spec_version"]["const"] == "1.0"
