from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.http_actions.models import HttpAction
from apps.services.models import Environment, Service
from tests.http_actions.api_server import AdminApi

TOKEN = "s3cr3t-admin-token-Zx81"
REPROCESS_PATH = "/api/v1/admin/dead-letters/{id}/reprocess"


@pytest.fixture
def api() -> Iterator[AdminApi]:
    server = AdminApi().start()
    yield server
    server.stop()


@pytest.fixture
def service(db: None) -> Service:
    return Service.objects.create(name="MaintainUK API", slug="maintainuk-api", team="Ops")


@pytest.fixture
def production(db: None) -> Environment:
    return Environment.objects.create(name="Production", slug="prod", is_production=True)


@pytest.fixture
def staging(db: None) -> Environment:
    return Environment.objects.create(name="Staging", slug="staging")


def make_action(
    service: Service, environment: Environment, origin: str, **fields: Any
) -> HttpAction:
    fields.setdefault("name", "Reprocess dead letter")
    fields.setdefault("method", "POST")
    fields.setdefault("url_template", origin + REPROCESS_PATH)
    fields.setdefault("parameters", [{"name": "id", "type": "integer", "pattern": ""}])
    fields.setdefault("expected_statuses", [200, 202])
    fields.setdefault("timeout_seconds", 5)
    token = fields.pop("token", TOKEN)
    action = HttpAction(service=service, environment=environment, **fields)
    action.set_token(token)
    action.save()
    return action
