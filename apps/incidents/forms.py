"""The incident pages' forms. They check what a person can get wrong on the page (an empty
title, an unknown service, a time in the future, an entry of another incident); the actions
check the rules again, since they are the only way in."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from apps.incidents.actions import FUTURE_TOLERANCE, state_choices_from
from apps.incidents.choices import IncidentState, Role, Visibility
from apps.incidents.models import Incident, Severity, TimelineEntry
from apps.services.models import Environment, Service

FUTURE_MESSAGE = "The time it happened is in the future: give a time before now."
STATE_FILTERS = [
    ("all", "All (open first)"),
    ("open", "Open"),
    ("resolved", "Resolved"),
    ("closed", "Closed"),
]


class ModelSelect(forms.Select):
    """A select of database rows. Django finds out whether it may carry "required" by
    reading its first choice: one more query per list, on a page with several of them. The
    forms are novalidate anyway: the server says what is missing, in words."""

    def use_required_attribute(self, initial: Any) -> bool:
        return False


def people() -> QuerySet[User]:
    return User.objects.filter(is_active=True).order_by("username")


class PersonChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_username())


class ServicesField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Service.objects.only("pk", "name"),
            required=False,
            widget=forms.SelectMultiple(attrs={"size": 6}),
            error_messages={
                "invalid_choice": "There is no service %(value)s: choose one from the list.",
                "invalid_pk_value": "\u201c%(pk)s\u201d is not a service: choose from the list.",
            },
            **kwargs,
        )


class EnvironmentsField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Environment.objects.all(),
            required=False,
            widget=forms.SelectMultiple(attrs={"size": 4}),
            help_text="None chosen means every environment of these services.",
            error_messages={
                "invalid_choice": "There is no environment %(value)s: choose one from the list.",
                "invalid_pk_value": "\u201c%(pk)s\u201d is not an environment.",
            },
            **kwargs,
        )


class DeclareForm(forms.Form):
    title = forms.CharField(
        max_length=200,
        help_text="What is broken, for whom: \u201cCheckout fails for all customers\u201d.",
        error_messages={"required": "Give the incident a title: what is broken, for whom."},
    )
    severity = forms.ModelChoiceField(
        queryset=Severity.objects.all(),
        empty_label="Choose the severity\u2026",
        widget=ModelSelect,
        error_messages={
            "required": "Choose a severity.",
            "invalid_choice": "There is no such severity: choose one from the list.",
        },
    )
    services = ServicesField(label="Affected services")
    environments = EnvironmentsField(label="Affected environments")
    customer_impact = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who cannot do what, since when.",
    )
    commander = PersonChoiceField(
        queryset=people(),
        widget=ModelSelect,
        label="Incident commander",
        help_text="You, unless someone else leads it.",
    )

    def __init__(self, *args: Any, declarer: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["commander"].initial = declarer.pk


def _occurred_at_field() -> forms.DateTimeField:
    return forms.DateTimeField(
        label="Happened at",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=f"Only when logging it afterwards ({timezone.get_current_timezone_name()}).",
    )


def _corrects_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Corrects entry #",
        required=False,
        min_value=1,
        help_text="Entries are never edited: a correction points to the entry it corrects.",
    )


class IncidentForm(forms.Form):
    """A form about one incident: it knows the incident to validate against it."""

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        self.incident = incident
        super().__init__(*args, **kwargs)

    def clean_occurred_at(self) -> datetime | None:
        occurred_at = cast(datetime | None, self.cleaned_data.get("occurred_at"))
        if occurred_at is not None and occurred_at > timezone.now() + FUTURE_TOLERANCE:
            raise forms.ValidationError(FUTURE_MESSAGE)
        return occurred_at

    def clean_corrects(self) -> TimelineEntry | None:
        number = self.cleaned_data.get("corrects")
        if number is None:
            return None
        entry = TimelineEntry.objects.filter(incident=self.incident, pk=number).first()
        if entry is None:
            raise forms.ValidationError(f"Entry #{number} is not in this incident's timeline.")
        return entry


class AcknowledgeForm(IncidentForm):
    pass


class CloseForm(IncidentForm):
    pass


class NoteForm(IncidentForm):
    text = forms.CharField(
        label="Note",
        max_length=10000,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "The note is empty."},
    )
    occurred_at = _occurred_at_field()
    corrects = _corrects_field()


class UpdateForm(IncidentForm):
    visibility = forms.ChoiceField(
        choices=Visibility.choices,
        initial=Visibility.INTERNAL,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
        help_text="A public update shows on the status page.",
    )
    current_status = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say what the current status is."},
    )
    findings = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    next_steps = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    eta = forms.CharField(label="ETA", required=False, max_length=100)
    occurred_at = _occurred_at_field()
    corrects = _corrects_field()


class StateForm(IncidentForm):
    state = forms.ChoiceField(label="New state")
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, incident=incident, **kwargs)
        field = cast(forms.ChoiceField, self.fields["state"])
        field.choices = [
            (value, IncidentState(value).label) for value in state_choices_from(incident.state)
        ]
        if not incident.is_open:
            field.label = "Reopen as"
            self.fields["reason"].required = True
            self.fields["reason"].error_messages["required"] = "Say why you reopen it."
            self.fields["reason"].help_text = "Required: why it is not over."


class SeverityForm(IncidentForm):
    severity = forms.ModelChoiceField(
        queryset=Severity.objects.all(), empty_label=None, widget=ModelSelect
    )
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when lowering it.",
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, incident=incident, **kwargs)
        self.fields["severity"].initial = incident.severity_id

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        severity = cleaned.get("severity")
        current = self.incident.severity
        if (
            severity is not None
            and severity.rank > current.rank
            and not cleaned.get("reason", "").strip()
        ):
            self.add_error("reason", f"Say why you lower it from {current.key} to {severity.key}.")
        return cleaned


class RoleForm(IncidentForm):
    role = forms.ChoiceField(choices=Role.choices)
    holder = PersonChoiceField(
        queryset=people(),
        widget=ModelSelect,
        required=False,
        label="Given to",
        empty_label="\u2014 nobody \u2014",
        help_text="The commander role is never empty.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("role") == Role.COMMANDER and cleaned.get("holder") is None:
            self.add_error("holder", "An incident always has a commander: name who takes over.")
        return cleaned


class AffectedForm(IncidentForm):
    services = ServicesField(label="Affected services")
    environments = EnvironmentsField(label="Affected environments")


class ResolveForm(IncidentForm):
    current_status = forms.CharField(
        label="Final public update",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown on the status page: what was fixed, what customers may still notice.",
        error_messages={"required": "Resolving needs a final public update: say what was fixed."},
    )
    findings = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    next_steps = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )


class IncidentFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=STATE_FILTERS)
    severity = forms.ModelChoiceField(
        queryset=Severity.objects.all(),
        required=False,
        to_field_name="key",
        empty_label="Any severity",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    service = forms.ModelChoiceField(
        queryset=Service.objects.only("pk", "name"),
        required=False,
        empty_label="Any service",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
