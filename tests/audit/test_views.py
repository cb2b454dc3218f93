from __future__ import annotations

from typing import Any

import pytest

from apps.audit.records import AuditTarget, record
from tests.conftest import client_for

pytestmark = pytest.mark.core


def test_it_lists_events_newest_first_with_filters_in_the_url(viewer: Any, admin: Any) -> None:
    record("operation.queued", actor=admin, target=AuditTarget("portal", "self", "Portal"))
    record("auth.login_failed", actor=None, actor_label="mallory", outcome="failed")
    client = client_for(viewer)

    response = client.get("/audit/?outcome=failed")
    assert response.status_code == 200
    content = response.content.decode()
    assert "auth.login_failed" in content
    assert "operation.queued" not in content

    response = client.get("/audit/?actor=alice-admin")
    assert "operation.queued" in response.content.decode()


def test_it_pages_by_sequence_number(viewer: Any) -> None:
    for index in range(55):
        record("test.event", actor=None, actor_label=f"bot{index}")
    client = client_for(viewer)
    first = client.get("/audit/?action=test.")
    assert first.context["next_query"].endswith("before=6")
    second = client.get("/audit/?action=test.&before=6")
    assert [event.seq for event in second.context["events"]] == [5, 4, 3, 2, 1]


def test_htmx_filtering_returns_only_the_results_fragment(viewer: Any) -> None:
    record("test.event", actor=None)
    response = client_for(viewer).get("/audit/?action=test", headers={"HX-Request": "true"})
    content = response.content.decode()
    assert 'id="results"' in content
    assert "<nav" not in content


def test_it_shows_an_empty_state_that_says_what_to_do(viewer: Any) -> None:
    response = client_for(viewer).get("/audit/?q=nothing-matches-this")
    assert "No event matches these filters" in response.content.decode()


def test_integrity_page_says_intact(admin: Any) -> None:
    record("test.event", actor=None)
    response = client_for(admin).get("/audit/integrity/")
    assert "Intact." in response.content.decode()
