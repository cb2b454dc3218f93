"""The parameters of the services operations, checked against the target before anything is
sent to a cluster."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from django import forms

from apps.operations.registry import ParamsForm
from apps.services.images import validate_image_reference
from apps.services.models import DeploymentTarget, Service, dns_subdomain

_FLAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_FLAG_VALUE_LENGTH = 1000


def deployment_target(form: ParamsForm) -> DeploymentTarget:
    found = None
    if form.target.id.isdigit():
        found = (
            DeploymentTarget.objects.select_related("service", "environment")
            .filter(pk=int(form.target.id))
            .first()
        )
    if found is None:
        raise forms.ValidationError(f"{form.target.label} is no longer registered.")
    return found


def healthy_checks_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Healthy checks in a row",
        min_value=1,
        max_value=10,
        initial=3,
        help_text="How many times the readiness URL must answer healthy, 2 s apart.",
    )


class RolloutForm(ParamsForm):
    image = forms.CharField(
        label="Image",
        max_length=600,
        validators=[validate_image_reference],
        help_text="The full reference with a tag or digest, e.g. "
        "registry.example.com/team/api:2.15.0.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    auto_rollback = forms.BooleanField(
        label="Automatic rollback",
        required=False,
        initial=True,
        help_text="Go back to the running revision if the rollout stalls or the readiness "
        "check fails.",
    )
    healthy_checks = healthy_checks_field()

    def clean_image(self) -> str:
        return str(self.cleaned_data["image"]).strip()


class RollbackForm(ParamsForm):
    to_revision = forms.IntegerField(
        label="Revision",
        min_value=1,
        required=False,
        help_text="Leave empty for the previous revision (kubectl rollout undo).",
    )
    healthy_checks = healthy_checks_field()


class ScaleForm(ParamsForm):
    replicas = forms.IntegerField(label="Replicas", min_value=0, max_value=1000)

    def clean_replicas(self) -> int:
        replicas = int(self.cleaned_data["replicas"])
        target = deployment_target(self)
        if replicas == 0 and target.environment.is_production:
            raise forms.ValidationError(
                "Scaling production to 0 stops the service: use the emergency action "
                "“Block traffic (scale to 0)”, which needs an admin and a reason."
            )
        if not target.min_replicas <= replicas <= target.max_replicas:
            raise forms.ValidationError(
                f"{target.service.name} in {target.environment.name} may run between "
                f"{target.min_replicas} and {target.max_replicas} replicas; an admin can "
                "change the bounds."
            )
        return replicas


def parse_flag_lines(text: str) -> dict[str, str]:
    """``NAME=value`` lines as a mapping (the value may be empty or contain '=')."""
    flags: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            flags[name.strip()] = value.strip()
    return flags


def _names(text: str) -> list[str]:
    return [name for name in re.split(r"[\s,]+", text) if name]


class FlagsForm(ParamsForm):
    set_flags = forms.CharField(
        label="Set",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One NAME=value per line, e.g. MAINTENANCE_MODE=true.",
    )
    unset_flags = forms.CharField(
        label="Unset",
        required=False,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="Names to remove, separated by spaces or commas.",
    )

    @cached_property
    def service(self) -> Service:
        return deployment_target(self).service

    def _check_name(self, name: str, errors: list[str]) -> None:
        if not _FLAG_NAME.match(name):
            errors.append(f"{name!r} is not a valid variable name.")
        elif not self.service.allows_flag(name):
            allowed = ", ".join(self.service.allowed_flags) or "none"
            errors.append(f"{name} is not on this service's allow-list ({allowed}).")

    def clean_set_flags(self) -> str:
        text = str(self.cleaned_data.get("set_flags") or "")
        errors: list[str] = []
        for line in text.splitlines():
            if line.strip() and "=" not in line:
                errors.append(f"{line.strip()!r} has no '=': write NAME=value.")
        flags = parse_flag_lines(text) if not errors else {}
        for name, value in flags.items():
            self._check_name(name, errors)
            if len(value) > MAX_FLAG_VALUE_LENGTH:
                errors.append(f"The value of {name} is longer than {MAX_FLAG_VALUE_LENGTH}.")
        if errors:
            raise forms.ValidationError(errors)
        return "\n".join(f"{name}={value}" for name, value in flags.items())

    def clean_unset_flags(self) -> str:
        names = _names(str(self.cleaned_data.get("unset_flags") or ""))
        errors: list[str] = []
        for name in names:
            self._check_name(name, errors)
        if errors:
            raise forms.ValidationError(errors)
        return " ".join(names)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        to_set = parse_flag_lines(cleaned.get("set_flags") or "")
        to_unset = _names(cleaned.get("unset_flags") or "")
        if not self.errors and not to_set and not to_unset:
            raise forms.ValidationError("Set or unset at least one flag.")
        if both := sorted(set(to_set) & set(to_unset)):
            raise forms.ValidationError(f"{', '.join(both)}: set or unset, not both.")
        return cleaned


class LogsForm(ParamsForm):
    pod = forms.CharField(
        label="Pod",
        required=False,
        max_length=253,
        validators=[dns_subdomain],
        help_text="Leave empty for every pod of the deployment.",
    )
    tail = forms.IntegerField(label="Lines per pod", min_value=1, max_value=1000, initial=100)
