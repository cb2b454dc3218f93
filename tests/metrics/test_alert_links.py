"""Where alerts link from elsewhere (issue 4): an incident's timeline shows its alert entries
with a link to the alert on /alerts/ and the alert's state, and audit events about an alert
link to its row there."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from apps.audit.links import object_url
from apps.audit.models import AuditEvent
from apps.incidents.models import Incident
from apps.metrics import alerts
from apps.metrics.models import Alert
from tests.conftest import client_for
from tests.metrics.test_alerts import STARTED, World, fire, make_world, switch_on


@pytest.fixture
def world(db: None) -> World:
    return make_world()


def entry_html(content: str, phase_word: str) -> str:
    """The timeline entry of an alert whose state badge says ``phase_word``."""
    for entry in re.findall(r'<li class="incident-entry entry-alert.*?</li>', content, re.S):
        if phase_word in entry:
            return str(entry)
    return ""


def test_the_timeline_links_each_alert_entry_to_the_alert_with_its_state(
    world: World, viewer: Any
) -> None:
    switch_on(world.service)
    alert = fire(world, summary="Error rate 7 % > 5 % <script>")
    incident = Incident.objects.get()
    client = client_for(viewer)
    page = client.get(incident.get_absolute_url()).content.decode()
    opened = entry_html(page, "Firing")
    assert f'href="/alerts/#alert-{alert.pk}"' in opened
    assert f"Alert #{alert.pk}</a> Error rate" in opened
    assert "opened this incident" in opened and "Critical" in opened
    assert "<script>" not in opened and "&lt;script&gt;" in opened
    alerts.resolve(source="metrics", fingerprint=alert.fingerprint, ended_at=STARTED)
    page = client.get(incident.get_absolute_url()).content.decode()
    resolved = entry_html(page, "Resolved")
    link = f"/alerts/?state=resolved&amp;before={alert.pk + 1}#alert-{alert.pk}"
    assert f'href="{link}"' in resolved
    # The link lands on the page that lists the alert.
    listed = client.get(link.replace("&amp;", "&").split("#")[0]).content.decode()
    assert f'id="alert-{alert.pk}"' in listed


def test_audit_events_about_an_alert_link_to_its_row(world: World, viewer: Any) -> None:
    alert = fire(world)
    fired = AuditEvent.objects.get(action="alert.fired")
    assert object_url(fired) == f"/alerts/#alert-{alert.pk}"
    assert f'id="alert-{alert.pk}"' in client_for(viewer).get("/alerts/").content.decode()
    alerts.resolve(
        source="metrics", fingerprint=alert.fingerprint, ended_at=STARTED + timedelta(minutes=5)
    )
    resolved = AuditEvent.objects.get(action="alert.resolved")
    url = f"/alerts/?state=resolved&before={alert.pk + 1}#alert-{alert.pk}"
    assert object_url(resolved) == url
    page = client_for(viewer).get(url.split("#")[0]).content.decode()
    assert f'id="alert-{alert.pk}"' in page
    # An alert removed since (or an id that is none) links nowhere.
    Alert.objects.filter(pk=alert.pk).delete()
    assert object_url(resolved) == ""
