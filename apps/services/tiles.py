"""A dashboard tile: one service in one environment, as plain values, and its HTML.

Hundreds of tiles are drawn per view, so a tile renders itself in Python: through the template
engine, its dozen lookups and tags cost more than the whole rest of the page (see
bench/dashboard.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.common.templatetags.portal import kind_label, reltime, state_badge
from apps.operations.models import Operation
from apps.services.badges import Badge
from apps.services.forms import HEALTH_ORDER
from apps.services.models import DeploymentTarget, Environment, Service

TAG_LENGTH = 24


def _shortened(text: str, length: int) -> str:
    return text if len(text) <= length else f"{text[: length - 1]}…"


@dataclass(frozen=True)
class Tile:
    url: str
    label: str
    health: str
    replicas: str
    image: str
    tag: str
    badges: list[Badge]
    change: Operation | None

    @classmethod
    def of(
        cls,
        target: DeploymentTarget,
        service: Service,
        environment: Environment,
        now: datetime,
        found_badges: list[Badge],
    ) -> Tile:
        known = target.desired_replicas is not None
        health = target.health_now(now)
        for badge in found_badges:  # the tile shows the worst of its probe and its badges
            if badge.health and HEALTH_ORDER[badge.health] < HEALTH_ORDER[health]:
                health = badge.health
        return cls(
            url=f"{service.get_absolute_url()}?env={environment.slug}",
            label=f"{service.name} in {environment.name}",
            health=health,
            replicas=f"{target.ready_replicas}/{target.desired_replicas}" if known else "?/?",
            image=target.observed_image,
            tag=_shortened(target.image_tag, TAG_LENGTH) if target.observed_image else "",
            badges=found_badges,
            change=target.last_change,
        )

    def html(self) -> SafeString:
        """The tile's table cell: the health in words and icon, ready/desired replicas, the
        image tag, its badges, and the last change with who made it and how it ended."""
        parts = [
            format_html(
                '<td class="tile tile-{}"><a class="tile-link" href="{}" aria-label="{}">{}</a> '
                '<span class="replicas" title="Ready / desired replicas">{}</span>',
                self.health,
                self.url,
                self.label,
                state_badge(self.health),
                self.replicas,
            )
        ]
        if self.tag:
            parts.append(
                format_html(' <code class="image-tag" title="{}">{}</code>', self.image, self.tag)
            )
        parts.append(
            format_html_join(
                "",
                ' <span class="badge text-bg-{}" title="{}"><i class="bi bi-{}" '
                'aria-hidden="true"></i> {}</span>',
                ((badge.tone, badge.title, badge.icon, badge.label) for badge in self.badges),
            )
        )
        if self.change is not None:
            parts.append(
                format_html(
                    '<div class="small text-body-secondary">{} by {}, {} {}</div>',
                    kind_label(self.change.kind),
                    self.change.requested_by.username,
                    reltime(self.change.created_at),
                    state_badge(self.change.state),
                )
            )
        # Every part is escaped by format_html above.
        return mark_safe("".join(parts) + "</td>")
