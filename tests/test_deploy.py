"""The deployment files agree with the code: the Kubernetes manifests are what the generator makes now and
render with kustomize; the compose file runs every service in every role from the one image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from doudi.manifests import render, worker_max_replicas
from doudi.stack import SERVICES
from shared.messaging.topics import TOPICS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
ROLES = ("api", "worker", "relay")


def test_the_checked_in_manifests_are_what_the_generator_makes() -> None:
    for name, text in render().items():
        assert (K8S / name).read_text() == text, f"deploy/k8s/{name} drifted: run `doudi manifests`"


def test_a_worker_never_scales_past_the_partitions_it_could_be_given() -> None:
    largest = max(topic.partitions for topic in TOPICS)
    for service in SERVICES:
        assert 1 <= worker_max_replicas(service) <= largest


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_probed_bounded_deployments_with_secrets_referenced_not_embedded() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], check=True, capture_output=True, text=True).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = [d["kind"] for d in documents]
    assert "Secret" not in kinds
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) >= {f"{s}-{r}" for s in SERVICES for r in ROLES}
    for deployment in deployments.values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("registry.example.org/doudi:")
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]["cpu"]
        assert {"secretRef": {"name": "doudi-secrets"}} in container["envFrom"]
    autoscaled = {d["spec"]["scaleTargetRef"]["name"] for d in documents if d["kind"] == "HorizontalPodAutoscaler"}
    assert autoscaled == {f"{s}-{r}" for s in SERVICES for r in ("api", "worker")}
    assert {d["metadata"]["name"] for d in documents if d["kind"] == "Job"} == {"doudi-migrate", "doudi-topics"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def test_compose_runs_each_service_in_each_role_after_the_topic_and_migration_jobs() -> None:
    services = _compose()["services"]
    for service in SERVICES:
        for role in ROLES:
            entry = services[f"{service}-{role}"]
            assert entry["command"] == ["serve", service, role]
            assert entry["image"] == "${DOUDI_IMAGE:-doudi:latest}"
            assert entry["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
            assert entry["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"][0] == "topics"
    assert "doudi migrate" in " ".join(services["migrate"]["entrypoint"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["sandbox-bank"]["command"] == ["serve", "sandbox_bank"]
