"""The operation-kind filter of the audit history ("a user's restores last week"): the events
of the operations of one kind, alone and combined with actor and dates, in the page and in
its exports; an unknown kind is ignored with a message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from apps.audit.records import AuditTarget, record
from apps.operations.choices import State
from tests.audit.test_exports import body
from tests.audit.test_history import shown
from tests.conftest import client_for
from tests.factories import make_operation, make_user

pytestmark = pytest.mark.core

LAST_WEEK = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday
EARLIER = datetime(2026, 2, 18, 10, 0, tzinfo=UTC)


@pytest.fixture
def restores(operator: Any) -> dict[str, int]:
    rita = make_user("rita-dba")
    ids = {}
    for name, who, kind, when in (
        # In the order of time: the history's seqs grow with it.
        ("rita_old_restore", rita, "backups.restore", EARLIER),
        ("rita_restore", rita, "backups.restore", LAST_WEEK),
        ("rita_backup", rita, "backups.backup", LAST_WEEK),
        ("olga_restore", operator, "backups.restore", LAST_WEEK),
    ):
        with time_machine.travel(when, tick=False):
            operation = make_operation(
                who, kind=kind, state=State.SUCCEEDED, target_key="backups.target:1"
            )
            target = AuditTarget("backups.target", "1", "orders")
            record("operation.queued", actor=who, target=target, operation_id=operation.pk)
            record("operation.succeeded", actor=who, target=target, operation_id=operation.pk)
        ids[name] = operation.pk
    record("auth.login", actor=rita)
    return ids


def operations_shown(response: Any) -> list[int]:
    return [event.operation_id for event in response.context["events"] if event.operation_id]


def test_it_filters_by_operation_kind(viewer: Any, restores: dict[str, int]) -> None:
    response = client_for(viewer).get("/audit/?kind=backups.restore")
    assert set(operations_shown(response)) == {
        restores["rita_restore"],
        restores["rita_old_restore"],
        restores["olga_restore"],
    }
    assert 'value="backups.restore" selected' in response.content.decode()


def test_a_users_restores_last_week(viewer: Any, restores: dict[str, int]) -> None:
    response = client_for(viewer).get(
        "/audit/?actor=rita-dba&kind=backups.restore&since=2026-03-02&until=2026-03-08"
    )
    assert shown(response) == ["operation.succeeded", "operation.queued"]
    assert set(operations_shown(response)) == {restores["rita_restore"]}


def test_the_export_holds_the_same_events_and_names_the_kind(
    viewer: Any, restores: dict[str, int]
) -> None:
    response = client_for(viewer).get("/audit/export.csv?actor=rita-dba&kind=backups.restore")
    text = body(response)
    assert "operation kind is backups.restore" in text
    assert text.count("operation.succeeded") == 2  # last week's and the earlier one


def test_an_unknown_kind_is_ignored_with_a_message(viewer: Any, restores: dict[str, int]) -> None:
    response = client_for(viewer).get("/audit/?kind=<b>nuke</b>&actor=rita-dba")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Operation kind" in content and "ignored" in content
    assert "<b>nuke</b>" not in content
    assert len(shown(response)) == 6  # rita's events of every kind, sign-in aside


def test_many_operations_of_a_kind_are_matched_by_a_subquery(
    viewer: Any, restores: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inline = shown(client_for(viewer).get("/audit/?kind=backups.restore"))
    monkeypatch.setattr("apps.audit.filters.KIND_IDS_INLINE", 1)
    assert shown(client_for(viewer).get("/audit/?kind=backups.restore")) == inline
    assert len(inline) == 6


def pages_of(viewer: Any, query: str) -> list[list[int]]:
    """The seqs of every page of ``query``, following the "older" links."""
    client, pages, url = client_for(viewer), [], f"/audit/?{query}"
    while url:
        response = client.get(url)
        pages.append([event.seq for event in response.context["events"]])
        url = f"/audit/?{response.context['next_query']}" if response.context["next_query"] else ""
    return pages


def test_a_kind_pages_newest_first_through_more_than_a_page(
    viewer: Any, restores: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of a kind reads the events of its operations and sorts them (not the newest
    rows of the whole history, tested one by one): the pages hold the same events in the
    same order either way."""
    target = AuditTarget("backups.target", "1", "orders")
    for _ in range(30):
        operation = make_operation(viewer, kind="backups.restore", state=State.SUCCEEDED)
        record("operation.queued", actor=viewer, target=target, operation_id=operation.pk)
        record("auth.login", actor=viewer)  # other events between them
        record("operation.succeeded", actor=viewer, target=target, operation_id=operation.pk)

    pages = pages_of(viewer, "kind=backups.restore")

    seqs = [seq for page in pages for seq in page]
    assert [len(page) for page in pages] == [50, 16]  # 30 * 2 new, 3 * 2 from the fixture
    assert seqs == sorted(seqs, reverse=True)
    monkeypatch.setattr("apps.audit.filters.KIND_IDS_INLINE", 1)
    assert pages_of(viewer, "kind=backups.restore") == pages
