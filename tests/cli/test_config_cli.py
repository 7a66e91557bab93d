"""``vlserve config show|check`` and the checks ``vlserve serve`` makes before loading a model."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
from typer.testing import CliRunner

from vlserve.cli.main import app
from vlserve.config import Settings

runner = CliRunner()
VLSERVE = str(Path(sys.executable).with_name("vlserve"))


def test_show_prints_the_effective_configuration_as_loadable_toml(tmp_path: Path) -> None:
    config = tmp_path / "in.toml"
    config.write_text("port = 9123\n[scheduling.lanes.interactive]\nconcurrency = 3\n")
    result = runner.invoke(app, ["config", "show", "--config", str(config)],
                           env={"VLSERVE_LIMITS__MAX_IMAGES": "5"})
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    assert shown["port"] == 9123 and shown["limits"]["max_images"] == 5  # file, then environment
    assert set(shown["scheduling"]["lanes"]) == {"interactive", "batch", "video"}  # merged with the defaults
    assert shown["scheduling"]["lanes"]["interactive"]["concurrency"] == 3
    # What is shown is a config file: it loads back to the same settings.
    (tmp_path / "out.toml").write_text(result.stdout)
    assert Settings.load(tmp_path / "out.toml") == Settings.load(config, limits={"max_images": 5})


def test_commands_warn_about_names_that_are_no_setting(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[scheduling.lanes.interactive]\nconcurency = 3\n")
    result = runner.invoke(app, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0  # loads (the typo is ignored by the settings) but says so
    assert "scheduling.lanes.interactive.concurency is not a setting" in " ".join(result.stderr.split())


def test_check_accepts_a_valid_file(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text('[scheduling.models.light]\nmodel = "tiny-moe"\n[scheduling.lanes.interactive]\n'
                      'fallback = "light"\n')
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


def test_check_names_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[scheduling.lanes.video]\nmodel = "vid"\n[scheduling.lane.batch]\nconcurrency = 1\n'
                      '[limits]\nmax_images = "many"\n')
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 1
    assert "scheduling.lanes.video.model names the engine 'vid', which is not configured" in result.stderr
    assert "scheduling.lane: not a setting" in result.stderr  # a typo the server would silently ignore
    assert "limits.max_images" in result.stderr
    assert "Traceback" not in result.output


def test_check_reports_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    assert runner.invoke(app, ["config", "check", str(broken)]).exit_code == 1
    missing = runner.invoke(app, ["config", "check", str(tmp_path / "nowhere.toml")])
    assert missing.exit_code == 1 and "nowhere.toml" in missing.stderr


def _serve(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "VLSERVE_DATA_DIR": str(cwd / "data")}
    started = time.monotonic()
    done = subprocess.run([VLSERVE, "serve", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    return done, time.monotonic() - started


def test_serve_refuses_a_bad_reference_before_loading_anything(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[scheduling.lanes.batch]\nfallback = "small"\n')
    # A model that cannot load: had loading started, its error would show.
    done, _ = _serve("--config", str(config), "--model", str(tmp_path / "no-model"), "--port", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "scheduling.lanes.batch.fallback names the engine 'small'" in done.stderr
    assert "no-model" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_serve_fails_fast_on_a_busy_port_without_loading_the_model(tiny_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done, elapsed = _serve("--model", str(tiny_dir), "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port" in done.stderr  # what the user can do about it
    output = done.stdout + done.stderr
    assert not re.search(r"\bready\b", output) and "Traceback" not in output and "Uvicorn running" not in output
    assert elapsed < 15  # the interpreter starting, not a model loading


def test_serve_on_port_0_says_the_port_it_listens_on(tmp_path: Path) -> None:
    env = {**os.environ, "VLSERVE_DATA_DIR": str(tmp_path / "data")}
    # A model that cannot load: the server stays up to say so on /readyz, which is all this needs.
    proc = subprocess.Popen([VLSERVE, "serve", "--model", str(tmp_path / "no-model"), "--port", "0",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+) ", line)
        assert match and int(match[1]) > 0, line
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{match[1]}/healthz", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
