"""The cluster watcher that keeps the dashboard's view of the deployments fresh, and the demo
catalog that `make demo` registers on the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.services.models import Cluster, DeploymentTarget, Service
from apps.services.observe import refresh_all
from apps.services.tasks import refresh_deployments
from tests.conftest import client_for
from tests.services.conftest import IMAGE_V1, Catalog, make_cluster
from tests.support.kube_emulator import DEMO_DEPLOYMENTS, KubeEmulator


def test_it_stores_what_the_clusters_say(catalog: Catalog) -> None:
    assert refresh_all() == 2

    target = DeploymentTarget.objects.get(pk=catalog.target.pk)
    assert target.observed_image == IMAGE_V1
    assert (target.ready_replicas, target.desired_replicas) == (2, 2)
    assert target.observed_revision == 1
    assert target.observed_at is not None
    assert target.observed_error == ""


def test_a_cluster_that_stops_answering_keeps_the_last_state_and_says_why(
    catalog: Catalog, kube: KubeEmulator
) -> None:
    refresh_all()
    gone = make_cluster("gone", kube.kubeconfig().replace(kube.url, "http://127.0.0.1:9"))
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(cluster=gone)

    assert refresh_deployments() == {"answered": 1}

    target = DeploymentTarget.objects.get(pk=catalog.target.pk)
    assert target.observed_image == IMAGE_V1
    assert "Cannot reach the cluster" in target.observed_error


def test_the_demo_catalog_points_at_the_emulators_demo_deployments(
    admin: Any, settings: Any, kube: KubeEmulator
) -> None:
    kube.reset()
    for deployment in DEMO_DEPLOYMENTS:
        kube.add_deployment(**deployment)
    settings.DEBUG = True
    call_command("seed_services_demo", url=kube.url, token=kube.token)
    call_command("seed_services_demo", url=kube.url, token=kube.token)  # idempotent

    assert Service.objects.count() == 3
    assert DeploymentTarget.objects.count() == len(DEMO_DEPLOYMENTS)
    assert refresh_all() == len(DEMO_DEPLOYMENTS)
    assert not DeploymentTarget.objects.exclude(observed_error="").exists()
    assert Cluster.objects.get().server == kube.url
    target = DeploymentTarget.objects.get(
        service__slug="rosterhub-api", environment__is_production=True
    )
    panel = client_for(admin).get(f"/services/targets/{target.pk}/deployment/")
    assert "registry.example.com/rosterhub/api:2.14.0" in panel.content.decode()
    assert target.namespace == "rosterhub"


def test_the_demo_catalog_is_refused_outside_debug(settings: Any, db: None) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="refused"):
        call_command("seed_services_demo", url="http://127.0.0.1:1", token="x")
