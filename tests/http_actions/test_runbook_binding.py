"""A runbook's ``curl -X POST …`` step that matches a defined action gets its "Run in portal"
button: the action's usual start form, with the values the command gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from apps.http_actions.models import HttpAction
from apps.runbooks.actions import do_import_runbook
from apps.runbooks.binding import Binder
from apps.runbooks.recognition import recognize
from apps.services.models import Environment, Service
from tests.conftest import client_for
from tests.http_actions.conftest import make_action

MAINTAINUK = (
    Path(__file__).parents[1] / "runbooks" / "data" / "maintainuk-operations-runbook.md"
).read_text()
ORIGIN = "https://api.maintainuk.com"
REPROCESS = (
    f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/{{id}}/reprocess "
    '-H "Authorization: Bearer <admin-token>"'
)


@pytest.fixture
def reprocess(service: Service, production: Environment) -> HttpAction:
    return make_action(service, production, ORIGIN)


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_runbooks_reprocess_command_is_bound_to_the_action(reprocess: HttpAction) -> None:
    assert not recognize(REPROCESS).recognized  # on its own, curl -X POST is not runnable
    binding = Binder().bind(recognize(REPROCESS))
    assert binding.recognition.recognized and binding.is_bound
    assert binding.recognition.kind == "http_actions.call"
    assert binding.recognition.ask == ["id"]  # {id} becomes a form field
    [link] = binding.links
    assert link.label == "Reprocess dead letter on MaintainUK API (Production)"
    assert link.url.startswith("/operations/start/http_actions.call/?")
    assert _query(link.url) == {"target": [str(reprocess.pk)]}


def test_a_concrete_value_in_the_command_fills_the_form(reprocess: HttpAction) -> None:
    command = f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/42/reprocess"
    [link] = Binder().bind(recognize(command)).links
    assert _query(link.url) == {"target": [str(reprocess.pk)], "p-id": ["42"]}


@pytest.mark.parametrize(
    "command",
    [
        f"curl -X GET {ORIGIN}/api/v1/admin/dead-letters/42/reprocess",  # other method
        f"curl -X POST {ORIGIN}/api/v1/admin/jobs/compliance-sweep/trigger",  # other path
        f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/42/reprocess/more",
        f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/42/reprocess; rm -rf /",
        f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/42/reprocess | sh",
    ],
)
def test_commands_that_do_not_match_stay_as_they_were(reprocess: HttpAction, command: str) -> None:
    binding = Binder().bind(recognize(command))
    assert not binding.recognition.recognized and not binding.links


def test_a_value_its_type_refuses_is_asked_for_instead(reprocess: HttpAction) -> None:
    command = f"curl -X POST {ORIGIN}/api/v1/admin/dead-letters/..%2Fx/reprocess"
    binding = Binder().bind(recognize(command))
    assert binding.recognition.ask == ["id"]
    assert "p-id" not in _query(binding.links[0].url)


def test_the_runbook_page_shows_run_in_portal_and_it_opens_the_form(
    admin: Any, operator: Any, reprocess: HttpAction
) -> None:
    runbook = do_import_runbook(admin, title="MaintainUK", service=None, source=MAINTAINUK)
    page = client_for(operator).get(runbook.get_absolute_url()).content.decode()
    start = f"/operations/start/http_actions.call/?target={reprocess.pk}"
    assert start in page
    assert "You will be asked for: id" in page
    form = client_for(operator).get(start)
    assert form.status_code == 200
    assert 'name="p-id"' in form.content.decode()
