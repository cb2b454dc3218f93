"""Forms of the reviews after an incident: the post-mortem, its action items, the managers'
follow-up list and the figures' period."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from apps.incidents.figures import DEFAULT_PERIOD, PERIOD_CHOICES


def _text(label: str, help_text: str = "", rows: int = 4) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": rows}),
    )


class PostMortemForm(forms.Form):
    """The sections of a post-mortem. All may stay empty in a draft; completing it asks for
    the summary, the impact and the root cause (the action checks, not the form)."""

    summary = _text("Summary", "What happened, in two or three sentences.", rows=3)
    impact = _text("Impact", "Who was affected, how, and for how long.", rows=3)
    timeline = _text(
        "Timeline excerpt",
        "Generated from the incident's entries, one line each (UTC). Edit it freely: the "
        "entries themselves stay as they were.",
        rows=10,
    )
    root_cause = _text("Root cause", "What, had it not been so, would have prevented it.")
    contributing_factors = _text("Contributing factors")
    went_well = _text("What went well", rows=3)
    went_badly = _text("What went badly", rows=3)


def owner_choices() -> Any:
    """People who can own an action item: active users with a role."""
    return (
        User.objects.filter(is_active=True)
        .filter(Q(groups__isnull=False) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


class OwnerField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        full = obj.get_full_name()
        return f"{obj.get_username()} ({full})" if full else obj.get_username()


class ActionItemForm(forms.Form):
    title = forms.CharField(label="Action", max_length=300)
    owner = OwnerField(queryset=User.objects.none(), label="Owner")
    due_date = forms.DateField(
        label="Due date", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = owner_choices()  # type: ignore[attr-defined]

    def clean_due_date(self) -> Any:
        due = self.cleaned_data["due_date"]
        if due < timezone.localdate():
            raise forms.ValidationError("The due date is in the past: give today or later.")
        return due


class FollowUpFilterForm(forms.Form):
    mine = forms.BooleanField(label="Only my action items", required=False)


class FiguresPeriodForm(forms.Form):
    period = forms.ChoiceField(choices=PERIOD_CHOICES, required=False)

    def chosen(self) -> str:
        if self.is_valid():
            return self.cleaned_data["period"] or DEFAULT_PERIOD
        return DEFAULT_PERIOD
