from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.services.choices import ClusterAccess, Tier
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.support.kube_emulator import DEMO_DEPLOYMENTS, kubeconfig_for

# The demo's environments: namespace suffix → (name, production?)
ENVIRONMENTS = {"-staging": ("staging", False), "": ("production", True)}
TEAMS = {"rosterhub": "Scheduling", "maintainuk": "Facilities"}


class Command(BaseCommand):
    help = (
        "Register the demo catalog: two environments, the Kubernetes API emulator as a "
        "cluster, and its deployments as services. DEBUG only."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8001", help="the emulator's URL")
        parser.add_argument("--token", required=True, help="the emulator's bearer token")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo catalog is for the embedded demo: refused with DEBUG off.")
        url = options["url"].rstrip("/")
        cluster, _ = Cluster.objects.get_or_create(
            name="demo-cluster", defaults={"access": ClusterAccess.KUBECONFIG}
        )
        cluster.set_kubeconfig(kubeconfig_for(url, options["token"]))
        cluster.server = url
        cluster.save(update_fields=["kubeconfig_encrypted", "server"])
        environments = {
            suffix: Environment.objects.get_or_create(
                slug=name, defaults={"name": name, "is_production": production, "order": order}
            )[0]
            for order, (suffix, (name, production)) in enumerate(ENVIRONMENTS.items())
        }
        for deployment in DEMO_DEPLOYMENTS:
            namespace, name = deployment["namespace"], deployment["name"]
            suffix = "-staging" if namespace.endswith("-staging") else ""
            product = namespace.removesuffix("-staging")
            service, _ = Service.objects.get_or_create(
                slug=name,
                defaults={
                    "name": name,
                    "team": TEAMS.get(product, "Operations"),
                    "tier": Tier.TIER_1 if name.endswith(("-api", "-web")) else Tier.TIER_2,
                    "description": f"The {product} {name.rsplit('-', 1)[-1]} (demo).",
                },
            )
            app = f"{url}/apps/{namespace}/{name}"
            DeploymentTarget.objects.update_or_create(
                service=service,
                environment=environments[suffix],
                defaults={
                    "cluster": cluster,
                    "namespace": namespace,
                    "deployment": name,
                    "container": deployment["container"],
                    "liveness_url": f"{app}/health/live",
                    "readiness_url": f"{app}/health/ready",
                    "health_url": f"{app}/health",
                    "min_replicas": 1,
                    "max_replicas": 6,
                },
            )
        self.stdout.write(
            f"Demo catalog: {Service.objects.count()} services on the emulator at {url}."
        )
