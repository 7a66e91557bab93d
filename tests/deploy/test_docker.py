"""deploy/docker: every Dockerfile passes hadolint; the gateway image installs no torch; what the
images COPY is in their build context; compose.yaml wires two gateways, vLLM on a GPU, Redis and
Prometheus to each other and to files that exist. (Images are not built here: no base image can be
pulled on the test machines; docs/deploy.md says so.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.helpers import DEPLOY, ROOT, dockerfiles, run, tool

DOCKER = DEPLOY / "docker"


COMPOSE_FILES = sorted(DOCKER.glob("compose*.yaml"))
# The engine service of each compose file: vLLM on a GPU, or a vlserve on CPU.
ENGINES = {"compose.yaml": "vllm", "compose.cpu.yaml": "engine"}


def compose(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def test_there_are_dockerfiles() -> None:
    assert {p.name for p in dockerfiles()} >= {"gateway.Dockerfile", "engine-cpu.Dockerfile"}


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_hadolint_passes(path: Path) -> None:
    done = run(tool("hadolint"), "--no-color", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_finds_faults(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base image and an unpinned apt install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    done = run(tool("hadolint"), "--no-color", str(bad))
    assert done.returncode != 0
    assert "DL3007" in done.stdout or "DL3006" in done.stdout
    assert "DL3008" in done.stdout


def test_gateway_image_has_no_torch() -> None:
    """The gateway installs the `gateway` and `s3` extras, which (with the core dependencies) have no torch."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (DOCKER / "gateway.Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert '".[gateway,s3]"' in text and '"vlserve[gateway,s3]"' in text and "torch" not in text
    heavy = re.compile(r"^(torch|transformers|vllm|safetensors|peft)\b")
    extras = project["optional-dependencies"]
    for dep in [*project["dependencies"], *extras["gateway"], *extras["s3"]]:
        assert not heavy.match(dep), dep


def test_cpu_image_pins_the_cpu_torch() -> None:
    lines = (DOCKER / "engine-cpu.Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert '"torch==2.13.0"' in text and "whl/cpu" in text
    assert "torchvision" not in text


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_copied_files_are_in_the_build_context(path: Path) -> None:
    """compose builds from the repository root with `<name>.dockerignore` beside the Dockerfile:
    every COPY source exists there and is not ignored (else the build fails after minutes)."""
    ignore = path.with_name(path.name + ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert ignore[[i for i, line in enumerate(ignore) if line.strip() and not line.startswith("#")][0]] == "*"
    sources = [src for line in path.read_text().splitlines() if line.startswith("COPY ") and "--from" not in line
               for src in line.split()[1:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert src.rstrip("/") in allowed, f"{src} is ignored by the .dockerignore"


def test_there_are_both_compose_files() -> None:
    assert {p.name for p in COMPOSE_FILES} == set(ENGINES)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services(path: Path) -> None:
    services = compose(path)["services"]
    engine = ENGINES[path.name]
    assert set(services) == {"gateway-1", "gateway-2", engine, "redis", "prometheus"}
    for name in ("gateway-1", "gateway-2"):
        gateway = services[name]
        build = gateway["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "gateway.Dockerfile")
        assert gateway["depends_on"][engine]["condition"] == "service_healthy"
        assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "artifacts:/shared/artifacts" in gateway["volumes"]
    assert "healthcheck" in services[engine] and "healthcheck" in services["redis"]


def test_vllm_service_has_a_gpu_and_qwen3_vl_flags() -> None:
    vllm = compose(DOCKER / "compose.yaml")["services"]["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    args = vllm["command"]
    assert args[0].startswith("Qwen/Qwen3-VL-")
    limit = next(a for a in args if a.startswith("--limit-mm-per-prompt="))
    assert set(yaml.safe_load(limit.split("=", 1)[1])) == {"image", "video"}


def test_cpu_engine_is_built_from_the_cpu_dockerfile() -> None:
    engine = compose(DOCKER / "compose.cpu.yaml")["services"]["engine"]
    assert (DOCKER / engine["build"]["context"] / engine["build"]["dockerfile"]).resolve() == (
        DOCKER / "engine-cpu.Dockerfile")
    assert "deploy" not in engine  # no GPU reservation


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_mounts_exist(path: Path) -> None:
    for name, service in compose(path)["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts {source}, which does not exist"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_gateway_config_names_compose_services(path: Path) -> None:
    """The gateways' settings point at the compose services by name and port, and at the model the
    engine serves."""
    from vlserve.config import Settings

    data = compose(path)
    mount = next(v for v in data["x-gateway"]["volumes"] if v.endswith(":/etc/vlserve/vlserve.toml:ro"))
    settings = Settings.load(DOCKER / mount.split(":")[0])
    services = data["services"]
    engine = services[ENGINES[path.name]]
    args = engine["command"]
    for url in settings.remote.upstreams:
        parts = urlsplit(url)
        assert parts.hostname == ENGINES[path.name], url
        assert f"--port={parts.port}" in args or args[args.index("--port") + 1] == str(parts.port)
    assert urlsplit(settings.jobs.redis_url).hostname in services
    assert str(settings.recon3d.artifacts_dir) == "/shared/artifacts"
    served = args[0] if path.name == "compose.yaml" else args[args.index("--model") + 1]
    assert settings.remote.upstream_model == served
    assert settings.remote.dialect == ("vllm" if path.name == "compose.yaml" else "vlserve")
