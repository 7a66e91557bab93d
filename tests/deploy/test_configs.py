"""Every vlserve settings file shipped in deploy/ passes `vlserve config check` (the server's own
validation plus unknown-key detection), and the checker does reject a broken one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY, ROOT, run, vlserve_configs


def config_check(path: Path) -> tuple[int, str]:
    done = run(sys.executable, "-m", "vlserve.cli.main", "config", "check", str(path))
    return done.returncode, done.stdout + done.stderr


def test_there_are_config_files_to_check() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in vlserve_configs()}
    assert {"docker/gateway.toml", "docker/gateway-cpu.toml", "k8s/base/vlserve.toml"} <= names


def test_no_deploy_file_is_ignored_by_git() -> None:
    """A file in deploy/ that .gitignore hides would be missing from every clone (and from CI)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = run("git", "ls-files", "--others", "--ignored", "--exclude-standard", "deploy", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], "ignored by .gitignore: rename them"


@pytest.mark.parametrize("path", vlserve_configs(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_shipped_config_is_valid(path: Path) -> None:
    code, out = config_check(path)
    assert code == 0, out
    assert "valid" in out


@pytest.mark.parametrize("path", vlserve_configs(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_shipped_config_uses_upstreams_and_redis(path: Path) -> None:
    """The gateways load no engine (no torch) and share jobs: every lane goes to an upstream pool."""
    from vlserve.config import Settings

    settings = Settings.load(path)
    assert settings.remote.upstreams, "main must be a pool of upstream servers in a gateway config"
    assert settings.jobs.backend == "redis"
    pools = {"main", *(n for n, m in settings.scheduling.models.items() if m.upstreams)}
    for name, lane in settings.scheduling.lanes.items():
        assert lane.model in pools, f"lane {name} runs on {lane.model}, which is no upstream pool"
        assert lane.fallback is None or lane.fallback in pools


def test_checker_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: a lane degrading to an engine nobody configured, and a typo."""
    text = (DEPLOY / "docker" / "gateway.toml").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('[scheduling.lanes.video]\nmodel = "main"',
                                   '[scheduling.lanes.video]\nmodel = "main"\nfallback = "nowhere"\nconcurency = 3'))
    code, out = config_check(broken)
    assert code == 1
    assert "nowhere" in out
    assert "concurency" in out
