"""The demo's status page lists the demo services, and the command refuses to run outside
the embedded demo."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from apps.services.models import Service
from apps.statuspage.models import StatusComponent

pytestmark = pytest.mark.core


def test_it_makes_every_demo_service_public_once(settings: Any, db: None) -> None:
    Service.objects.create(name="rosterhub-api", slug="rosterhub-api", team="Scheduling")
    Service.objects.create(name="maintainuk-web", slug="maintainuk-web", team="Facilities")
    settings.DEBUG = True

    call_command("seed_status_demo")
    call_command("seed_status_demo")  # idempotent

    assert list(StatusComponent.objects.values_list("name", "position")) == [
        ("maintainuk-web", 1),
        ("rosterhub-api", 2),
    ]
    page = Client().get("/status/").content.decode()
    assert "rosterhub-api" in page and "maintainuk-web" in page


def test_it_is_refused_outside_debug(settings: Any, db: None) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="refused"):
        call_command("seed_status_demo")
    assert not StatusComponent.objects.exists()
