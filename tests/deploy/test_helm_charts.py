"""Every service has a Helm chart that lints clean and renders manifests valid for Kubernetes."""

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from pdfchat_tools.devstack import SERVICES
from pdfchat_tools.infra import REPO_ROOT

CHARTS = REPO_ROOT / "deploy" / "helm"


def test_every_service_has_a_chart() -> None:
    assert sorted(path.name for path in CHARTS.iterdir() if path.is_dir()) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_chart_lints_without_errors(service: str) -> None:
    report = helm.lint(str(CHARTS / service), strict=False)
    errors = [message for message in report["messages"] if message["severity"] >= 3] + report["errors"]
    assert errors == []


@pytest.mark.parametrize("service", SERVICES)
def test_chart_renders_valid_kubernetes_manifests(service: str) -> None:
    chart = helm.Chart.load(str(CHARTS / service))
    rendered = chart.render(name="pdfchat", namespace="pdfchat")
    documents = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == ["Deployment", "Service"]
    for document in documents:
        kubernetes_validate.validate(document, "1.33.0", strict=True)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"], "SREs need a readiness probe to roll out safely"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_chart_values_never_hold_secrets() -> None:
    for values in CHARTS.glob("*/values.yaml"):
        env = yaml.safe_load(Path(values).read_text())["env"]
        assert not any("SECRET" in key or "API_KEY" in key or "DATABASE_URL" in key for key in env), values
