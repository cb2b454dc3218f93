"""The services tests' world: the Kubernetes API emulator over HTTP (the unmodified official
client talks to it), and a catalog whose targets point at its deployments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.support.kube_emulator import KubeEmulator

NAMESPACE = "shop"
IMAGE_V1 = "registry.example.com/shop/api:1.0.0"
# Short enough for a stalled rollout to fail within a test.
PROGRESS_DEADLINE_SECONDS = 3


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator(ready_seconds=0.2).start()
    yield emulator
    emulator.stop()


@dataclass
class Catalog:
    service: Service
    staging: Environment
    production: Environment
    cluster: Cluster
    target: DeploymentTarget  # staging
    production_target: DeploymentTarget


def make_cluster(name: str, kubeconfig: str) -> Cluster:
    cluster = Cluster(name=name, access=ClusterAccess.KUBECONFIG)
    cluster.set_kubeconfig(kubeconfig)
    cluster.save()
    return cluster


def make_target(
    service: Service, environment: Environment, cluster: Cluster, kube: KubeEmulator, **fields: Any
) -> DeploymentTarget:
    namespace = fields.pop("namespace", NAMESPACE)
    deployment = fields.pop("deployment", f"api-{environment.slug}")
    app = f"{kube.url}/apps/{namespace}/{deployment}"
    return DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace=namespace,
        deployment=deployment,
        container="api",
        liveness_url=f"{app}/health/live",
        readiness_url=f"{app}/health/ready",
        health_url=f"{app}/health",
        min_replicas=fields.pop("min_replicas", 1),
        max_replicas=fields.pop("max_replicas", 4),
        **fields,
    )


@pytest.fixture
def catalog(db: None, kube: KubeEmulator) -> Catalog:
    kube.reset()
    for environment in ("staging", "production"):
        kube.add_deployment(
            NAMESPACE,
            f"api-{environment}",
            IMAGE_V1,
            replicas=2,
            container="api",
            progress_deadline_seconds=PROGRESS_DEADLINE_SECONDS,
            env={"MAINTENANCE_MODE": "false"},
        )
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")
    staging = Environment.objects.create(name="staging", slug="staging", order=0)
    production = Environment.objects.create(
        name="production", slug="production", is_production=True, order=1
    )
    cluster = make_cluster("emulated", kube.kubeconfig())
    return Catalog(
        service=service,
        staging=staging,
        production=production,
        cluster=cluster,
        target=make_target(service, staging, cluster, kube),
        production_target=make_target(service, production, cluster, kube),
    )
