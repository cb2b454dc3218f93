"""Template helpers used on every page: state badges (word + icon + colour, never colour
alone) and relative times with the absolute time on hover."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from django import forms, template
from django.forms import BoundField
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

register = template.Library()

# state → (CSS modifier, Bootstrap icon, word)
_STATES: dict[str, tuple[str, str, str]] = {
    "awaiting_approval": ("warning", "hourglass-split", "Awaiting approval"),
    "approved": ("info", "person-check", "Approved"),
    "queued": ("secondary", "clock", "Queued"),
    "running": ("primary", "arrow-repeat", "Running"),
    "succeeded": ("success", "check-circle-fill", "Succeeded"),
    "failed": ("danger", "x-octagon-fill", "Failed"),
    "cancelled": ("secondary", "slash-circle", "Cancelled"),
    "rejected": ("danger", "hand-thumbs-down", "Rejected"),
    "denied": ("danger", "shield-x", "Denied"),
    "ok": ("success", "check-circle-fill", "OK"),
    "warning": ("warning", "exclamation-triangle-fill", "Warning"),
    "critical": ("danger", "x-octagon-fill", "Critical"),
    "no_data": ("secondary", "question-circle", "No data"),
    "stale": ("secondary", "hourglass-bottom", "Stale"),
    "maintenance": ("info", "tools", "Maintenance"),
}


@register.simple_tag
def state_badge(state: str) -> SafeString:
    return _badge(state)


@cache
def _badge(state: str) -> SafeString:
    # A handful of states, drawn hundreds of times on a dashboard: made once each.
    modifier, icon, word = _STATES.get(state, ("secondary", "circle", state.replace("_", " ")))
    return format_html(
        '<span class="badge state state-{} text-bg-{}"><i class="bi bi-{}" aria-hidden="true">'
        "</i> {}</span>",
        state,
        modifier,
        icon,
        word,
    )


@register.simple_tag
def reltime(value: datetime | None) -> SafeString:
    """ "4 minutes ago", with the UTC time in the title; static/app.js adds the viewer's zone."""
    if value is None:
        return format_html('<span class="text-body-secondary">{}</span>', "—")
    now = timezone.now()
    if abs((now - value).total_seconds()) < 60:
        words = "just now"
    elif value <= now:
        words = f"{timesince(value, now)} ago"
    else:
        words = f"in {timesince(now, value)}"
    utc = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), utc, words)


@register.simple_tag
def field_input(field: BoundField) -> SafeString:
    """A form field's widget with the Bootstrap class its type needs."""
    widget = field.field.widget
    if isinstance(widget, forms.CheckboxInput):
        css = "form-check-input"
    elif isinstance(widget, forms.Select):
        css = "form-select"
    else:
        css = "form-control"
    if field.errors:
        css += " is-invalid"
    attrs: dict[str, str | bool] = {"class": css}
    if field.help_text:
        attrs["aria-describedby"] = f"{field.auto_id}_help"
    return field.as_widget(attrs=attrs)


@register.filter
def kind_label(name: str) -> str:
    """An operation kind's label from its name ("services.rollout" → "Roll out an image")."""
    from apps.operations.registry import UnknownKind, get_kind

    try:
        return get_kind(name).label
    except UnknownKind:
        return name


@register.filter
def percent(value: float | None) -> str:
    """A fraction as a percentage people read: 0.9993 → "99.93 %"."""
    if value is None:
        return "—"
    return f"{value * 100:.2f} %"
