from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from vlserve.cli.main import app

runner = CliRunner()


def test_make_tiny_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "make-tiny", str(tmp_path / "m"), "--moe"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl_moe"
    shown = runner.invoke(app, ["models", "show", str(tmp_path / "m")])
    assert shown.exit_code == 0 and '"moe": true' in shown.output


def test_ask_json_with_image(tiny_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(image)
    result = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--image", str(image), "--max-tokens", "6",
                                 "--json", "What is it?"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["usage"]["output_tokens"] == 6
    assert payload["usage"]["image_tokens"] > 0
    assert 0 < payload["confidence"] <= 1
    assert {"load_ms", "generate_ms"} <= set(payload["timings"])


def test_ask_streams_the_same_answer(tiny_dir: Path) -> None:
    streamed = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--max-tokens", "8", "Hello"])
    as_json = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--max-tokens", "8", "--json", "Hello"])
    assert streamed.exit_code == 0 and as_json.exit_code == 0
    assert streamed.stdout.rstrip("\n") == json.loads(as_json.stdout)["text"]


def test_ask_with_schema(tiny_dir: Path, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 20},
                                                "sure": {"type": "boolean"}},
              "required": ["answer", "sure"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    result = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--schema", str(tmp_path / "s.json"),
                                 "--max-tokens", "40", "Answer as JSON"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"answer", "sure"}


def test_bad_inputs_give_coded_errors_not_tracebacks(tiny_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not an image")
    result = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--image", str(bad), "Hi"])
    assert result.exit_code == 2
    assert "error 1001" in result.output
    missing = runner.invoke(app, ["ask", "--model", str(tmp_path / "nowhere"), "Hi"])
    assert missing.exit_code == 2 and "error 5002" in missing.output


def test_console_script_entry_point(tiny_dir: Path) -> None:
    """The installed `vlserve` command, as a user runs it."""
    exe = Path(sys.executable).with_name("vlserve")
    out = subprocess.run([str(exe), "ask", "--model", str(tiny_dir), "--max-tokens", "3", "--json", "Hi"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["usage"]["output_tokens"] == 3
