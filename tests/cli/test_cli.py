from __future__ import annotations

import json
import os
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
    assert payload["metadata"]["output_tokens"] == 6
    assert payload["metadata"]["image_tokens"] > 0
    assert 0 < payload["confidence"] <= 1
    assert payload["metadata"]["processing_time_ms"] > 0


def test_ask_streams_the_same_answer(tiny_dir: Path) -> None:
    streamed = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--max-tokens", "8", "Hello"])
    as_json = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--max-tokens", "8", "--json", "Hello"])
    assert streamed.exit_code == 0 and as_json.exit_code == 0
    assert streamed.stdout.rstrip("\n") == json.loads(as_json.stdout)["answer"]


def test_ask_with_schema(tiny_dir: Path, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 20},
                                                "sure": {"type": "boolean"}},
              "required": ["answer", "sure"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    result = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--schema", str(tmp_path / "s.json"),
                                 "--max-tokens", "40", "Answer as JSON"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"answer", "sure"}
    as_json = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--schema", str(tmp_path / "s.json"),
                                  "--max-tokens", "40", "--json", "Answer as JSON"])
    assert set(json.loads(as_json.stdout)["answer"]) == {"answer", "sure"}  # parsed, as the server answers


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
    assert json.loads(out.stdout)["metadata"]["output_tokens"] == 3


def test_ask_prints_only_the_answer(tiny_dir: Path) -> None:
    """No third-party warning or log line around the streamed answer (they used to land mid-answer)."""
    exe = Path(sys.executable).with_name("vlserve")
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # every warning would be shown
    out = subprocess.run([str(exe), "ask", "--model", str(tiny_dir), "--max-tokens", "5", "Hi"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    as_json = subprocess.run([str(exe), "ask", "--model", str(tiny_dir), "--max-tokens", "5", "--json", "Hi"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert out.stdout == json.loads(as_json.stdout)["answer"] + "\n"


def test_ask_model_tiny_prints_only_the_answer_even_when_it_builds_tiny(tmp_path: Path) -> None:
    """`--model tiny` builds the checkpoint on first use: quietly too."""
    exe = Path(sys.executable).with_name("vlserve")
    env = {**os.environ, "PYTHONWARNINGS": "default", "VLSERVE_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    out = subprocess.run([str(exe), "ask", "--model", "tiny", "--max-tokens", "3", "Hi"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout.strip()
    assert list(tmp_path.rglob("tiny/config.json"))  # it was built here, during this command


def test_ask_prepares_images_as_the_server_does(tiny_dir: Path, tmp_path: Path) -> None:
    """The CLI's media settings are the server's: config.Limits, or the file given with --config."""
    from vlserve.config import Limits
    from vlserve.media import VisionSettings, count_image_tokens

    image = tmp_path / "big.png"
    Image.fromarray(np.zeros((1200, 1600, 3), dtype=np.uint8)).save(image)  # 1.9 M pixels

    def image_tokens(*extra: str) -> int:
        result = runner.invoke(app, ["ask", "--model", str(tiny_dir), "--image", str(image), "--max-tokens", "1",
                                     "--json", *extra, "What is it?"])
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["metadata"]["image_tokens"])

    server_default = VisionSettings.from_limits(Limits(), checkpoint=tiny_dir)
    assert image_tokens() == count_image_tokens(1600, 1200, server_default)
    assert image_tokens() <= Limits().max_pixels // (32 * 32)  # not the checkpoint's 16.7 M pixel budget
    config = tmp_path / "small.toml"
    config.write_text("[limits]\nmax_pixels = 200000\n")
    configured = VisionSettings.from_limits(Limits(max_pixels=200_000), checkpoint=tiny_dir)
    assert image_tokens("--config", str(config)) == count_image_tokens(1600, 1200, configured)


def test_ask_json_has_one_shape_locally_and_through_a_server(engine: object, tiny_dir: Path, tmp_path: Path) -> None:
    from tests.api.helpers import make_settings, run_server
    from vlserve.api.app import create_app

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    ask = ["ask", "--image", str(image), "--max-tokens", "3", "--json", "What is it?"]
    local = runner.invoke(app, [*ask, "--model", str(tiny_dir)])
    assert local.exit_code == 0, local.output
    for url in run_server(create_app(make_settings(tmp_path), engine=engine)):  # type: ignore[arg-type]
        remote = runner.invoke(app, [*ask, "--server", url])
        assert remote.exit_code == 0, remote.output
    mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
    assert list(mine) == list(theirs) == ["request_id", "answer", "confidence", "metadata", "code", "msg"]
    assert set(mine["metadata"]) == set(theirs["metadata"])
    assert mine["metadata"]["output_tokens"] == theirs["metadata"]["output_tokens"] == 3
    assert isinstance(mine["answer"], str) and isinstance(theirs["answer"], str)
