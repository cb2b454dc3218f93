"""Recognized commands bound to what is registered in the portal: the "Run in portal" link
to the operation's usual start page (target and parameters in the URL, nothing run), or
what to register first."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from apps.backups.models import DatabaseTarget
from apps.datastores.models import RedisTarget
from apps.http_actions.matching import matching_actions
from apps.http_actions.models import HttpAction
from apps.operations.forms import PARAMS_PREFIX
from apps.runbooks.recognition import Recognition
from apps.services.models import DeploymentTarget, Service


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass
class Binding:
    """A recognized command's links (one per matching target), or what is missing."""

    recognition: Recognition
    links: list[Link] = field(default_factory=list)
    missing: str = ""

    @property
    def is_bound(self) -> bool:
        return bool(self.links)


class Binder:
    """Binds many commands with a handful of queries: every registered target is read once
    per page, however many commands it has."""

    def __init__(self, service: Service | None = None) -> None:
        self.service = service

    @cached_property
    def deployments(self) -> list[DeploymentTarget]:
        return list(DeploymentTarget.objects.select_related("service", "environment"))

    @cached_property
    def databases(self) -> list[DatabaseTarget]:
        return list(DatabaseTarget.objects.order_by("name"))

    @cached_property
    def redis_targets(self) -> list[RedisTarget]:
        return list(RedisTarget.objects.order_by("name"))

    @cached_property
    def start_urls(self) -> dict[str, str]:
        return {}

    def _start(self, kind: str, target_id: int, params: dict[str, Any]) -> str:
        if kind not in self.start_urls:
            self.start_urls[kind] = reverse("operations:start", args=[kind])
        query: dict[str, str | int] = {"target": target_id}
        for name, value in params.items():
            if isinstance(value, str | int) and value != "":
                query[f"{PARAMS_PREFIX}-{name}"] = value
        return f"{self.start_urls[kind]}?{urlencode(query)}"

    def bind(self, recognition: Recognition) -> Binding:
        binding = Binding(recognition)
        if not recognition.recognized:
            if recognition.action.startswith("curl"):
                return self._bind_http_action(recognition) or binding
            return binding
        kind_of_target = recognition.target.get("type")
        if kind_of_target in ("deployment", "namespace", "pod", "compose_service", "health_url"):
            self._bind_deployments(binding)
        elif kind_of_target == "database":
            self._bind_databases(binding)
        elif kind_of_target == "redis":
            self._bind_redis(binding)
        return binding

    @cached_property
    def http_actions(self) -> list[HttpAction]:
        return list(HttpAction.objects.for_page())

    def _bind_http_action(self, recognition: Recognition) -> Binding | None:
        """A curl call that an admin defined as a custom HTTP action (apps/http_actions):
        recognized as that action's kind, with the values the command gives."""
        matches = matching_actions(recognition.command, self.http_actions)
        if self.service is not None:
            own = [m for m in matches if m.action.service_id == self.service.pk]
            matches = own or matches
        if not matches:
            return None
        first = matches[0]
        bound = replace(
            recognition,
            kind=first.action.kind_name,
            target={"type": "http_action", "action": first.action.pk},
            params=first.params,
            ask=first.ask,
            reason="",
        )
        links = [
            Link(str(m.action), self._start(m.action.kind_name, m.action.pk, m.params))
            for m in matches
        ]
        return Binding(bound, links)

    def _link(self, binding: Binding, label: str, pk: int, page: str) -> None:
        recognition = binding.recognition
        url = self._start(recognition.kind, pk, recognition.params) if recognition.kind else page
        binding.links.append(Link(label, url))

    def _bind_deployments(self, binding: Binding) -> None:
        target = binding.recognition.target
        namespace, deployment = target.get("namespace"), target.get("deployment")
        kind_of_target = target["type"]
        if kind_of_target == "deployment":
            found = [
                t
                for t in self.deployments
                if t.deployment == deployment and (namespace is None or t.namespace == namespace)
            ]
            where = f"deployment {deployment}" + (f" in namespace {namespace}" if namespace else "")
        elif kind_of_target in ("namespace", "pod"):
            found = [t for t in self.deployments if t.namespace == namespace]
            where = f"a deployment in namespace {namespace}"
        elif kind_of_target == "compose_service":
            name = target.get("service")
            found = [t for t in self.deployments if name in (t.deployment, t.container)]
            where = f"a deployment or container named {name}"
        else:
            url = target.get("url")
            found = [
                t
                for t in self.deployments
                if url in (t.health_url, t.readiness_url, t.liveness_url)
            ]
            where = f"a target whose health, readiness or liveness URL is {url}"
        if not found:
            binding.missing = f"Register {where} as a deployment target of a service."
        for item in found:
            self._link(binding, str(item), item.pk, item.get_absolute_url())

    def _bind_databases(self, binding: Binding) -> None:
        name = binding.recognition.target.get("database")
        found = [t for t in self.databases if t.database == name] if name else []
        if name is None and self.service is not None:
            found = [t for t in self.databases if t.service_id == self.service.pk]
        if not found:
            binding.missing = (
                f"Register the database {name} as a database target."
                if name
                else "Name the database (-d NAME), or attach this runbook to a service "
                "with a database target."
            )
        for item in found:
            self._link(binding, item.name, item.pk, reverse("datastores:postgres", args=[item.pk]))

    def _bind_redis(self, binding: Binding) -> None:
        found = self.redis_targets
        if self.service is not None:
            found = [t for t in found if t.service_id == self.service.pk] or found
        if not found:
            binding.missing = "Register the Redis server as a Redis target."
        for item in found:
            self._link(binding, item.name, item.pk, reverse("datastores:redis", args=[item.pk]))
