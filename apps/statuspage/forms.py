"""The admins' form for a public component."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.services.models import Service
from apps.statuspage.models import StatusComponent


class ComponentForm(forms.ModelForm):
    """Publish a service under a public name; once published, only the name and the
    description change (to show another service, remove this one and add that one)."""

    class Meta:
        model = StatusComponent
        fields = ["service", "name", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            del self.fields["service"]
        else:
            service_field = self.fields["service"]
            service_field.queryset = Service.objects.filter(  # type: ignore[attr-defined]
                status_component__isnull=True
            ).only("name")
            service_field.help_text = "Services already on the status page are not listed."
        self.fields["name"].required = False
        self.fields[
            "name"
        ].help_text = "What the public calls it. Leave empty to use the service's name."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        service = cleaned.get("service")
        if not cleaned.get("name") and service is not None:
            cleaned["name"] = service.name[:100]
        if not cleaned.get("name") and "name" not in self.errors:
            self.add_error("name", "Give the component a public name.")
        return cleaned
