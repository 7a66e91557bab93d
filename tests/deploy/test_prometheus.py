"""deploy/prometheus: the alerting rules pass `promtool check rules` and their own unit tests
(`promtool test rules`: each alert fires on the series it is meant for and not on healthy ones),
both scrape configs pass `promtool check config`, the compose scrape targets are compose services,
and every vlserve metric the rules and autoscalers use is one vlserve exports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.helpers import DEPLOY, K8S, ROOT, run, tool

PROM = DEPLOY / "prometheus"


def test_rules_check() -> None:
    files = sorted((PROM / "rules").glob("*.yml"))
    assert files
    done = run(tool("promtool"), "check", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_unit_tests() -> None:
    tests = sorted((PROM / "tests").glob("*.test.yml"))
    assert tests
    done = run(tool("promtool"), "test", "rules", *map(str, tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation fails `promtool test rules`: the unit tests above really evaluate."""
    text = (PROM / "tests" / "vlserve.test.yml").read_text().replace("../rules/", str(PROM / "rules") + "/")
    wrong = tmp_path / "wrong.test.yml"
    wrong.write_text(text.replace("lane: video", "lane: interactive", 1))
    done = run(tool("promtool"), "test", "rules", str(wrong))
    assert done.returncode != 0


@pytest.mark.parametrize("compose", sorted((DEPLOY / "docker").glob("compose*.yaml")), ids=lambda p: p.name)
def test_compose_scrape_config(compose: Path) -> None:
    """The scrape config a compose file mounts passes promtool and scrapes exactly its gateways and
    engine, by service name."""
    services = yaml.safe_load(compose.read_text())["services"]
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    path = (compose.parent / mount.split(":")[0]).resolve()
    done = run(tool("promtool"), "check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(path.read_text())
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert {t.split(":")[0] for t in targets} == set(services) - {"redis", "prometheus"}


def test_kubernetes_scrape_config(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes service discovery (it rejects
    kubernetes_sd_configs as an unknown field). Where that is so, the discovery block is swapped for
    static targets in a copy, so everything else (relabelling, regexes, rule files) is still checked."""
    promtool = tool("promtool")
    done = run(promtool, "check", "config", str(PROM / "kubernetes.yml"))
    if done.returncode != 0 and "kubernetes_sd_configs not found" in done.stdout + done.stderr:
        config = yaml.safe_load((PROM / "kubernetes.yml").read_text())
        for job in config["scrape_configs"]:
            assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
            job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
        shutil.copytree(PROM / "rules", tmp_path / "rules")
        (tmp_path / "kubernetes.yml").write_text(yaml.safe_dump(config))
        done = run(promtool, "check", "config", str(tmp_path / "kubernetes.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    # prometheus-adapter maps series to pods by these two labels (deploy/k8s HPAs).
    text = (PROM / "kubernetes.yml").read_text()
    assert "target_label: namespace" in text and "target_label: pod" in text


def exported_metrics() -> set[str]:
    """Metric names vlserve exports (the source of scheduling/metrics.py, whose collectors need a
    running service to instantiate), with the suffixes Prometheus adds to counters and histograms."""
    names = set(re.findall(r'"(vlserve_[a-z_]+)"', (ROOT / "src/vlserve/scheduling/metrics.py").read_text()))
    return names | {n + suffix for n in names for suffix in ("_total", "_count", "_sum", "_bucket")}


def test_rules_and_autoscalers_use_exported_metrics() -> None:
    exported = exported_metrics()
    assert {"vlserve_queue_depth", "vlserve_errors_total", "vlserve_budget_used"} <= exported
    texts = [p.read_text() for p in (PROM / "rules").glob("*.yml")]
    texts.append((K8S / "prometheus-adapter" / "values.yaml").read_text())
    used = {m for text in texts for m in re.findall(r"\b(vlserve_[a-z_]+)", text)}
    assert used, "no vlserve metric found in the rules"
    assert used <= exported, f"not exported by vlserve: {sorted(used - exported)}"


@pytest.mark.parametrize("metric", ["vllm:num_requests_waiting"])
def test_vllm_metric_names_match_what_the_pool_watches(metric: str) -> None:
    """The engine autoscaler and alert read the same vLLM queue metric the gateways' pools watch."""
    assert metric in (ROOT / "src/vlserve/runtime/remote.py").read_text()
    assert metric in (K8S / "prometheus-adapter" / "values.yaml").read_text()
    assert metric in (PROM / "rules" / "vlserve.yml").read_text()


def test_adapter_queries_are_valid_promql(tmp_path: Path) -> None:
    """prometheus-adapter fills its templates per request; filled as it would for one pod, each
    metricsQuery and seriesQuery must parse (checked as recording rules by promtool)."""
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    rules = []
    for i, rule in enumerate(values["rules"]["custom"]):
        series = rule["seriesQuery"]
        name = re.search(r'__name__="([^"]+)"', series)
        metric = name.group(1) if name else series.split("{")[0]
        query = (rule["metricsQuery"].replace("<<.Series>>", metric)
                 .replace("<<.LabelMatchers>>", 'namespace="vlserve",pod=~"vlserve-gateway-.*"')
                 .replace("<<.GroupBy>>", "pod"))
        assert "<<" not in query, query
        rules += [{"record": f"adapter:query{i}", "expr": query}, {"record": f"adapter:series{i}", "expr": series}]
    path = tmp_path / "adapter.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": rules}]}))
    done = run(tool("promtool"), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
