"""The admins' forms for the severities table and the escalation policies with their levels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth.models import Group, User
from django.core.validators import URLValidator
from django.forms import BaseInlineFormSet, inlineformset_factory
from django.forms.models import ModelChoiceIterator

from apps.incidents.models import EscalationLevel, EscalationPolicy, Severity

_PERIOD_PART = re.compile(r"(\d+)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|m)?", re.IGNORECASE)
_UNIT_MINUTES = {"d": 24 * 60, "h": 60, "m": 1}
MAX_PERIOD = timedelta(days=30)
MAX_LEVEL = 99


def format_period(value: timedelta | None) -> str:
    """A period as people type it: "5m", "2h", "1d", "1h 30m"."""
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    parts = []
    for unit, size in _UNIT_MINUTES.items():
        if minutes >= size:
            parts.append(f"{minutes // size}{unit}")
            minutes %= size
    return " ".join(parts) or "0m"


def parse_period(text: str) -> timedelta:
    """ "15" or "15m", "2h", "1d", "1h 30m" → a timedelta; ValueError when it is none of them."""
    text = text.strip()
    position = 0
    total = 0
    for match in _PERIOD_PART.finditer(text):
        if text[position : match.start()].strip(" ,"):
            raise ValueError(text)
        unit = (match.group(2) or "m")[0].lower()
        total += int(match.group(1)) * _UNIT_MINUTES[unit]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(text)
    return timedelta(minutes=total)


class PeriodField(forms.Field):
    """A duration typed in minutes, hours or days ("5m", "2h", "1d"), at least a minute."""

    widget = forms.TextInput(attrs={"inputmode": "text", "autocomplete": "off"})

    def prepare_value(self, value: Any) -> Any:
        return format_period(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta | None:
        if isinstance(value, timedelta):
            return value
        if value in self.empty_values or not str(value).strip():
            return None
        try:
            period = parse_period(str(value))
        except ValueError:
            raise forms.ValidationError(
                "Write a period like 5m, 2h, 1d or 1h 30m.", code="invalid"
            ) from None
        if period < timedelta(minutes=1):
            raise forms.ValidationError("At least one minute.", code="min_value")
        if period > MAX_PERIOD:
            raise forms.ValidationError("At most 30 days.", code="max_value")
        return period


class SeverityForm(forms.ModelForm):
    acknowledge_within = PeriodField(
        label="Acknowledge within",
        help_text="How long level 1 has before the next level is told, and each level after: "
        "5m, 2h, 1d.",
    )
    update_every = PeriodField(
        label="Status update every",
        required=False,
        help_text="The commander is reminded when an update is this late. Empty: no cadence.",
    )

    class Meta:
        model = Severity
        fields = [
            "key",
            "name",
            "rank",
            "description",
            "acknowledge_within",
            "business_days",
            "update_every",
            "requires_postmortem",
            "blocks_deploys",
        ]
        labels = {
            "rank": "Rank (1 is the worst)",
            "business_days": "Business days: a deadline on a weekend moves to Monday",
            "requires_postmortem": "Post-mortem required (due 48 hours after resolving)",
            "blocks_deploys": "Blocks ordinary deploys on the affected services",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class PolicyForm(forms.ModelForm):
    """The webhook URL is a secret: write-only, never put back into the form; left empty on
    edit it keeps the stored one."""

    default = forms.BooleanField(
        label="Default policy",
        required=False,
        help_text="Incidents use the default policy. Making this one the default takes it "
        "from the current default.",
    )
    webhook_url = forms.URLField(
        label="Slack-compatible webhook URL",
        required=False,
        max_length=2000,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    remove_webhook = forms.BooleanField(label="Remove the webhook", required=False)

    field_order = ["name", "default", "email_enabled", "webhook_url", "remove_webhook"]

    class Meta:
        model = EscalationPolicy
        fields = ["name", "email_enabled"]
        labels = {"email_enabled": "Send email to the people of each level"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["default"] = self.instance.is_default
        if self.instance.webhook_url_encrypted:
            self.fields["webhook_url"].help_text = (
                "A webhook is set: stored encrypted, never shown. Leave empty to keep it, "
                "paste a new URL to replace it."
            )
        else:
            self.fields["webhook_url"].help_text = (
                "An incoming webhook (Slack or compatible) that hears of every event. "
                "Stored encrypted."
            )
            del self.fields["remove_webhook"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("remove_webhook") and cleaned.get("webhook_url"):
            self.add_error("webhook_url", "Either paste a new URL or remove the webhook, not both.")
        if self.instance.is_default and not cleaned.get("default"):
            self.add_error(
                "default",
                "Incidents need a default policy: make another policy the default instead.",
            )
        return cleaned


class PersonChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        full_name = obj.get_full_name()
        return f"{obj.get_username()} ({full_name})" if full_name else obj.get_username()


class LevelForm(forms.ModelForm):
    level = forms.IntegerField(min_value=1, max_value=MAX_LEVEL, label="Level")
    users = PersonChoices(
        queryset=User.objects.none(),
        required=False,
        label="People",
        help_text="Ctrl or ⌘ + click to choose several.",
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.none(),
        required=False,
        label="Groups",
        help_text="Everyone in the group is told.",
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )

    class Meta:
        model = EscalationLevel
        fields = ["level", "name", "users", "groups"]
        labels = {"name": "Name"}
        widgets = {"name": forms.TextInput(attrs={"placeholder": "e.g. Engineering lead"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users_field: Any = self.fields["users"]
        groups_field: Any = self.fields["groups"]
        users_field.queryset = _people()
        groups_field.queryset = Group.objects.order_by("name")

    def validate_unique(self) -> None:
        # Level numbers are checked across the whole set by the formset, and the action saves
        # them in an order the database accepts: levels 2 and 3 may swap in one edit.
        return None


def _people() -> Any:
    return User.objects.filter(is_active=True).order_by("username")


class _ListedChoices(ModelChoiceIterator):
    """The choices of a model field from objects already read (``field.listed``)."""

    def __iter__(self) -> Iterator[Any]:
        field: Any = self.field
        for obj in field.listed:
            yield self.choice(obj)

    def __len__(self) -> int:
        field: Any = self.field
        return len(field.listed)


def _offer(field: Any, objects: list[Any]) -> None:
    field.listed = objects
    field.iterator = _ListedChoices
    field.widget.choices = field.choices


class BaseLevelFormSet(BaseInlineFormSet):
    """The levels of one policy, and ``blank`` empty rows to add more, numbered on."""

    def __init__(self, *args: Any, blank: int = 1, **kwargs: Any) -> None:
        self.extra = blank
        super().__init__(*args, **kwargs)
        known = len(self.get_queryset())
        self.initial_extra = [{"level": known + 1 + row} for row in range(blank)]
        # Every level offers the same people and groups: read once, not once per level.
        people = list(_people())
        groups = list(Group.objects.order_by("name"))
        for form in self.forms:
            _offer(form.fields["users"], people)
            _offer(form.fields["groups"], groups)

    def add_fields(self, form: Any, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = "Remove this level"

    def kept_forms(self) -> list[forms.ModelForm[EscalationLevel]]:
        """The levels that will exist after saving: filled in and not marked for removal
        (once the forms are cleaned)."""
        kept = []
        for form in self.forms:
            if not form.has_changed() and form.instance.pk is None:
                continue
            if self.can_delete and form.cleaned_data.get("DELETE"):
                continue
            kept.append(form)
        return kept

    def clean(self) -> None:
        if any(self.errors):
            return
        numbers = sorted(form.cleaned_data["level"] for form in self.kept_forms())
        if not numbers:
            raise forms.ValidationError(
                "A policy needs level 1: the people told when an incident is declared."
            )
        if numbers != list(range(1, len(numbers) + 1)):
            raise forms.ValidationError(
                "Number the levels 1, 2, 3… with no gap and no repeat (they are now "
                f"{', '.join(str(number) for number in numbers)}): an unacknowledged incident "
                "escalates from each level to the next."
            )


LevelFormSet = inlineformset_factory(
    EscalationPolicy,
    EscalationLevel,
    form=LevelForm,
    formset=BaseLevelFormSet,
    fields=["level", "name", "users", "groups"],
    extra=1,
    can_delete=True,
    max_num=MAX_LEVEL,
    validate_max=True,
)
