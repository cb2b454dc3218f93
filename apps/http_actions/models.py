from __future__ import annotations

import shlex
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from apps.common.crypto import decrypt, encrypt
from apps.http_actions.choices import Method
from apps.http_actions.parameters import ParameterSpec, from_stored
from apps.http_actions.url_templates import UrlTemplate, parse_template
from apps.operations.registry import Target
from apps.services.models import Environment, Service

TARGET_TYPE = "http_actions.action"
KIND = "http_actions.call"
DESTRUCTIVE_KIND = "http_actions.call_destructive"
TOKEN_SHOWN = "<token>"


class HttpActionQuerySet(models.QuerySet["HttpAction"]):
    def for_page(self) -> HttpActionQuerySet:
        return self.select_related("service", "environment")


class HttpAction(models.Model):
    """A call to a service's own admin API that admins define once ("Reprocess dead letter
    queue"), run by operators as an operation. The bearer token is encrypted at rest and only
    decrypted on the worker, into the request's header: no page, log or audit record shows
    it."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="http_actions")
    environment = models.ForeignKey(
        Environment,
        on_delete=models.PROTECT,
        related_name="http_actions",
        help_text="Where this API runs: production asks for a reason, and the deploy gate "
        "of the service's target there applies.",
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    method = models.CharField(max_length=6, choices=Method.choices, default=Method.POST)
    url_template = models.CharField("URL template", max_length=1000)
    parameters = models.JSONField(default=list, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    token_encrypted = models.TextField(blank=True, editable=False)
    expected_statuses = models.JSONField(default=list)
    timeout_seconds = models.PositiveSmallIntegerField(
        "Timeout (seconds)", default=10, validators=[MinValueValidator(1), MaxValueValidator(120)]
    )
    destructive = models.BooleanField(
        default=False,
        help_text="Admins only, with a reason and a confirmation (always so for DELETE).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = HttpActionQuerySet.as_manager()

    class Meta:
        ordering = ["service__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "environment", "name"], name="http_action_unique_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.service.name} ({self.environment.name})"

    def get_absolute_url(self) -> str:
        return f"{self.service.get_absolute_url()}?env={self.environment.slug}"

    def set_token(self, token: str) -> None:
        self.token_encrypted = encrypt(token) if token else ""

    @property
    def has_token(self) -> bool:
        return bool(self.token_encrypted)

    def token(self) -> str:
        return decrypt(self.token_encrypted) if self.token_encrypted else ""

    @property
    def is_destructive(self) -> bool:
        return self.destructive or self.method == Method.DELETE

    @property
    def kind_name(self) -> str:
        return DESTRUCTIVE_KIND if self.is_destructive else KIND

    @property
    def parameter_specs(self) -> list[ParameterSpec]:
        return from_stored(self.parameters)

    @property
    def template(self) -> UrlTemplate:
        return parse_template(self.url_template)

    @property
    def path_template(self) -> str:
        return self.template.path

    def url_for(self, params: dict[str, Any]) -> str:
        """The URL to call, each value checked by its type and encoded (UnsafeValue if not)."""
        values = {spec.name: spec.check(params.get(spec.name)) for spec in self.parameter_specs}
        return self.template.fill(values)

    def curl_command(self, params: dict[str, Any]) -> str:
        """The runbook's way of doing the same, the token left out."""
        try:
            url = self.url_for(params)
        except ValueError:
            url = self.url_template
        words = ["curl", "-X", self.method, url]
        for name, value in self.headers.items():
            words += ["-H", f"{name}: {value}"]
        if self.has_token:
            words += ["-H", f"Authorization: Bearer {TOKEN_SHOWN}"]
        return shlex.join(words)

    def as_operation_target(self) -> Target:
        return Target(
            type=TARGET_TYPE,
            id=str(self.pk),
            label=str(self),
            environment=self.environment.name,
            is_production=self.environment.is_production,
            url=self.get_absolute_url(),
        )
