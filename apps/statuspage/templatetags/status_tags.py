"""The public page's helpers: a component status as icon + word (never colour alone), and
times and durations written out for people outside the company."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.statuspage.choices import OVERALL, STATUS_LOOK, ComponentStatus

register = template.Library()


@register.simple_tag
def status_badge(status: str) -> SafeString:
    icon, modifier = STATUS_LOOK.get(status, ("question-circle", "secondary"))
    word = ComponentStatus(status).label if status in ComponentStatus.values else status
    return format_html(
        '<span class="badge status-badge text-bg-{}"><i class="bi bi-{}" aria-hidden="true">'
        "</i> {}</span>",
        modifier,
        icon,
        word,
    )


@register.simple_tag
def overall_banner(status: str) -> SafeString:
    icon, modifier = STATUS_LOOK[status]
    indicator, description = OVERALL[status]
    return format_html(
        '<div class="overall text-bg-{} indicator-{}" role="status" data-indicator="{}">'
        '<i class="bi bi-{}" aria-hidden="true"></i> {}</div>',
        modifier,
        indicator,
        indicator,
        icon,
        description,
    )


@register.simple_tag
def when(value: datetime | None) -> SafeString:
    """ "14 Mar 2025, 10:02 UTC" in the portal's zone, machine-readable too."""
    if value is None:
        return format_html("{}", "—")
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}">{} {}, {}</time>',
        value.isoformat(),
        local.day,
        local.strftime("%b %Y"),
        local.strftime("%H:%M %Z"),
    )


@register.filter
def lasted(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end``: "38 min", "2 h 5 min", "3 d 4 h"."""
    if start is None or end is None or end < start:
        return ""
    minutes = int((end - start).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{max(minutes, 1)} min"
