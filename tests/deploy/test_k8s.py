"""deploy/k8s: the base and every overlay render with `kubectl kustomize`, every manifest validates
offline against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are errors),
and the parts that make the deployment work are there: probes on /readyz and /healthz, GPU requests
for engines, a PDB and an autoscaler per scaled Deployment, autoscaler metrics that the
prometheus-adapter rules produce, and a ConfigMap whose vlserve settings load and name real Services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.helpers import K8S, kustomizations, render

# The oldest Kubernetes minor still supported upstream when this was written, and the newest schema
# the validator ships: the manifests use only APIs both have (autoscaling/v2, policy/v1).
VERSIONS = ("1.32.0", None)
SCALED_ALONE = {"vlserve-redis"}  # one Redis; replace it by a managed one in production


def validator() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the dev extra)")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module", params=kustomizations(), ids=lambda p: p.relative_to(K8S).as_posix())
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def test_there_are_overlays() -> None:
    assert {p.name for p in kustomizations()} >= {"base", "dev", "production"}


def test_manifests_validate(rendered: list[dict[str, Any]]) -> None:
    kv = validator()
    for version in VERSIONS:
        for doc in rendered:
            kv.validate(doc, version or kv.utils.latest_version(), strict=True)


def test_validator_rejects_faults() -> None:
    """The validation above can fail: a misspelt field and a missing selector are errors."""
    kv = validator()
    deployment = next(d for d in render(K8S / "base") if d["kind"] == "Deployment")
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["replicaz"] = misspelt["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError):
        kv.validate(misspelt, kv.utils.latest_version(), strict=True)
    unselected = json.loads(json.dumps(deployment))
    del unselected["spec"]["selector"]
    with pytest.raises(kv.ValidationError):
        kv.validate(unselected, kv.utils.latest_version(), strict=True)


def test_gateway_probes(rendered: list[dict[str, Any]]) -> None:
    gateway = by_kind(rendered, "Deployment")["vlserve-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:2] == ["--config", "/etc/vlserve/vlserve.toml"]


def test_engines_request_gpus(rendered: list[dict[str, Any]]) -> None:
    engines = {n: d for n, d in by_kind(rendered, "Deployment").items() if n.startswith("vllm-")}
    assert engines
    for name, deployment in engines.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"], name
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 1, name
        assert container["args"][0].startswith("Qwen/Qwen3-VL-"), name
        assert any(a.startswith("--limit-mm-per-prompt=") for a in container["args"]), name
        assert container["readinessProbe"]["httpGet"]["path"] == "/health", name


def test_every_deployment_has_service_pdb_and_autoscaler(rendered: list[dict[str, Any]]) -> None:
    services = by_kind(rendered, "Service")
    pdbs = by_kind(rendered, "PodDisruptionBudget")
    hpas = by_kind(rendered, "HorizontalPodAutoscaler")
    for name, deployment in by_kind(rendered, "Deployment").items():
        labels = pod_labels(deployment)
        assert any(matches(s["spec"]["selector"], labels) for s in services.values()), f"no Service for {name}"
        if name in SCALED_ALONE:
            continue
        assert any(matches(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs.values()), f"no PDB: {name}"
        targets = [h for h in hpas.values() if h["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
        assert len(targets) == 1, f"no autoscaler for {name}"
        assert targets[0]["apiVersion"] == "autoscaling/v2"


def adapter_metrics() -> set[str]:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    return {rule["name"]["as"] for rule in values["rules"]["custom"]}


def test_autoscalers_use_queue_metrics_the_adapter_serves(rendered: list[dict[str, Any]]) -> None:
    hpas = by_kind(rendered, "HorizontalPodAutoscaler")
    served = adapter_metrics()
    used: dict[str, set[str]] = {}
    for name, hpa in hpas.items():
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], name
        pods = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
        assert pods <= served, f"{name} scales on {pods - served}, which prometheus-adapter does not serve"
        used[hpa["spec"]["scaleTargetRef"]["name"]] = pods
    assert used["vlserve-gateway"] >= {"vlserve_queue_depth", "vlserve_running_requests"}
    assert all(metrics == {"vllm_num_requests_waiting"} for n, metrics in used.items() if n.startswith("vllm-"))


def test_configmap_settings_load_and_name_services(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    """The settings the gateways mount load, and every upstream and Redis URL names a Service of this
    rendering on a port it exposes."""
    from vlserve.config import Settings

    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(
        "vlserve-config")]
    path = tmp_path / "vlserve.toml"
    path.write_text(configmap["data"]["vlserve.toml"])
    settings = Settings.load(path)
    gateway = by_kind(rendered, "Deployment")["vlserve-gateway"]
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]  # the hashed name
    services = by_kind(rendered, "Service")
    urls = [*settings.remote.upstreams, settings.jobs.redis_url,
            *(u for m in settings.scheduling.models.values() for u in m.upstreams)]
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in services, url
        assert parts.port in {p["port"] for p in services[parts.hostname]["spec"]["ports"]}, url


def test_secret_holds_key_hashes(rendered: list[dict[str, Any]]) -> None:
    import base64

    (secret,) = [d for d in rendered if d["kind"] == "Secret"]
    keys = json.loads(base64.b64decode(secret["data"]["VLSERVE_AUTH__KEYS"]))
    assert isinstance(keys, list)
    assert all(set(k) <= {"id", "sha256", "rate_per_minute"} for k in keys)
    gateway = by_kind(rendered, "Deployment")["vlserve-gateway"]
    env_from = gateway["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in env_from
