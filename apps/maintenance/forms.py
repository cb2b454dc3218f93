from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from apps.maintenance import actions, recurrence
from apps.maintenance.choices import Impact
from apps.maintenance.models import Occurrence, Window
from apps.services.models import Environment, Service
from apps.statuspage.models import StatusComponent

LOCAL_INPUT = "%Y-%m-%dT%H:%M"


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format=LOCAL_INPUT)


def _in_zone(value: datetime | None, zone_name: str) -> datetime | None:
    """The typed wall-clock time read in the window's zone (the form field gives it naive or
    in the server's zone: only its wall-clock digits count)."""
    if value is None:
        return None
    zone = recurrence.zone_named(zone_name)
    return value.replace(tzinfo=None).replace(tzinfo=zone, fold=0)


class WindowForm(forms.Form):
    title = forms.CharField(max_length=200)
    services = forms.ModelMultipleChoiceField(
        queryset=Service.objects.order_by("name"), widget=forms.SelectMultiple(attrs={"size": 6})
    )
    environments = forms.ModelMultipleChoiceField(
        queryset=Environment.objects.order_by("order", "name"),
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        help_text="None ticked: every environment.",
    )
    time_zone = forms.CharField(
        max_length=64,
        initial="Europe/London",
        widget=forms.TextInput(attrs={"list": "time-zones", "autocomplete": "off"}),
        help_text="IANA name; start and end are read in this zone.",
    )
    start = forms.DateTimeField(widget=LocalDateTimeInput(), input_formats=[LOCAL_INPUT])
    end = forms.DateTimeField(widget=LocalDateTimeInput(), input_formats=[LOCAL_INPUT])
    recurrence = forms.CharField(
        max_length=recurrence.MAX_RULE_LENGTH,
        required=False,
        help_text="Optional RFC 5545 rule: FREQ=WEEKLY;BYDAY=SU (Sundays), "
        "FREQ=MONTHLY;BYDAY=1SA (first Saturday).",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    impact = forms.ChoiceField(choices=Impact.choices, initial=Impact.DEGRADED)
    message = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What users read; plain text.",
    )
    maintenance_mode = forms.BooleanField(
        required=False,
        label="Switch maintenance mode",
        help_text="MAINTENANCE_MODE=true and MAINTENANCE_MESSAGE on the targets at the start, "
        "removed at the end (the services' flag allow-list must name them).",
    )
    short_notice_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason for short notice",
        help_text="Required when the start is less than 7 days away; the announcement says it.",
    )
    confirm_overlap = forms.BooleanField(
        required=False, label="Schedule it anyway, despite the overlap shown above"
    )

    def __init__(self, *args: Any, window: Window | None = None, **kwargs: Any) -> None:
        self.window = window
        if window is not None and "initial" not in kwargs:
            zone = window.zone
            kwargs["initial"] = {
                "title": window.title,
                "services": list(window.services.all()),
                "environments": list(window.environments.all()),
                "time_zone": window.time_zone,
                "start": window.start_at.astimezone(zone).replace(tzinfo=None),
                "end": window.end_at.astimezone(zone).replace(tzinfo=None),
                "recurrence": window.recurrence,
                "impact": window.impact,
                "message": window.message,
                "maintenance_mode": window.maintenance_mode,
                "short_notice_reason": window.short_notice_reason,
            }
        super().__init__(*args, **kwargs)
        self.overlaps: list[Occurrence] = []

    def clean_time_zone(self) -> str:
        name = str(self.cleaned_data["time_zone"]).strip()
        try:
            recurrence.zone_named(name)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        zone_name = cleaned.get("time_zone")
        if self.errors or not zone_name:
            return cleaned
        data = self.data_for_action()
        now = timezone.now()
        errors = actions.validate(data, now)
        if self.window is not None and self.window.start_at == data.start_at:
            # Editing a window already under way keeps its first start, even in the past.
            errors = [error for error in errors if "in the past" not in error]
        if errors:
            raise forms.ValidationError(errors)
        self.overlaps = actions.overlapping(data, exclude=self.window)
        if self.overlaps and not cleaned.get("confirm_overlap"):
            self.add_error(
                "confirm_overlap",
                "Other windows on these services overlap this one: tick to confirm.",
            )
        return cleaned

    def data_for_action(self) -> actions.WindowData:
        cleaned = self.cleaned_data
        zone_name = cleaned["time_zone"]
        start = _in_zone(cleaned.get("start"), zone_name)
        end = _in_zone(cleaned.get("end"), zone_name)
        assert start is not None and end is not None
        return actions.WindowData(
            title=cleaned["title"],
            services=list(cleaned["services"]),
            environments=list(cleaned.get("environments") or []),
            time_zone=zone_name,
            start_at=start,
            end_at=end,
            recurrence=cleaned.get("recurrence") or "",
            impact=cleaned["impact"],
            message=cleaned["message"],
            maintenance_mode=bool(cleaned.get("maintenance_mode")),
            short_notice_reason=cleaned.get("short_notice_reason") or "",
        )


class MoveForm(forms.Form):
    start = forms.DateTimeField(widget=LocalDateTimeInput(), input_formats=[LOCAL_INPUT])
    end = forms.DateTimeField(widget=LocalDateTimeInput(), input_formats=[LOCAL_INPUT])
    reason = forms.CharField(required=False, max_length=500)


EXTENSIONS = [(15, "15 minutes"), (30, "30 minutes"), (60, "1 hour"), (120, "2 hours")]


class ExtendForm(forms.Form):
    minutes = forms.TypedChoiceField(choices=EXTENSIONS, coerce=int, initial=30)

    @property
    def by(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["minutes"])


class NoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000)


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)


class SubscribeForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Your email address")
    scope = forms.ChoiceField(
        choices=[("all", "All components"), ("chosen", "Only the components I choose")],
        initial="all",
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
        label="Tell me about",
    )
    components = forms.ModelMultipleChoiceField(
        queryset=StatusComponent.objects.order_by("position", "name"),
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("scope") == "chosen" and not cleaned.get("components"):
            self.add_error("components", "Choose at least one component, or all of them.")
        return cleaned
