"""The manager review queue (issue 8, item 6): which events enter it, marking one reviewed with
a comment (itself audited), the refusals, paging, the empty state and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.utils import timezone

from apps.audit.choices import ReviewRule
from apps.audit.models import AuditEvent, ReviewItem
from apps.audit.records import AuditTarget, EventDraft, record, record_many, verify_chain
from tests.conftest import client_for
from tests.factories import make_operation

pytestmark = pytest.mark.core

URL = "/audit/review/"
TARGET = AuditTarget("backups.target", "1", "orders")


def _request(actor: Any, kind: str, params: dict[str, Any], *, production: bool) -> AuditEvent:
    operation = make_operation(actor, kind=kind, params=params, is_production=production)
    return record(
        "operation.requested",
        actor=actor,
        target=TARGET,
        data={"kind": kind, "params": params, "origin": ""},
        operation_id=operation.pk,
    )


def test_it_queues_the_sensitive_events_and_nothing_else(admin: Any) -> None:
    restore = _request(admin, "backups.restore", {"backup": 1}, production=True)
    _request(admin, "backups.restore", {"backup": 1}, production=False)
    to_zero = _request(admin, "services.scale", {"replicas": 0}, production=True)
    _request(admin, "services.scale", {"replicas": 2}, production=True)
    _request(admin, "services.scale", {"replicas": 0}, production=False)
    approval = record("operation.approved", actor=admin, target=TARGET)
    override = record("operation.gate_overridden", actor=admin, target=TARGET)
    export = record("audit.exported", actor=admin, data={"format": "csv"})
    roles = record("auth.roles_changed", actor=admin, data={"groups": ["admin"]})
    form_roles = record("user.changed", actor=admin, data={"changes": {"groups": ["", "admin"]}})
    record("user.changed", actor=admin, data={"changes": {"email": ["a", "b"]}})
    auto_prune = record(
        "databasetarget.changed",
        actor=admin,
        target=TARGET,
        reason="the disk fills up",
        data={"changes": {"auto_prune": ["False", "True"]}},
    )
    turned_off = {"changes": {"auto_prune": ["True", "False"]}}
    record("databasetarget.changed", actor=admin, data=turned_off)
    record("databasetarget.changed", actor=admin, data={"changes": {"keep_daily": ["7", "3"]}})
    record("operation.approved", actor=admin, outcome="denied", target=TARGET)
    record("operation.queued", actor=admin, data={"kind": "backups.restore", "approved_by": 1})
    record("auth.login", actor=admin)

    queued = {item.event_id: item.rule for item in ReviewItem.objects.all()}
    assert queued == {
        restore.pk: ReviewRule.PRODUCTION_RESTORE,
        to_zero.pk: ReviewRule.SCALE_TO_ZERO,
        approval.pk: ReviewRule.APPROVAL,
        override.pk: ReviewRule.GATE_OVERRIDE,
        export.pk: ReviewRule.AUDIT_EXPORT,
        roles.pk: ReviewRule.ROLE_CHANGE,
        form_roles.pk: ReviewRule.ROLE_CHANGE,
        auto_prune.pk: ReviewRule.AUTO_PRUNE,
    }


def test_batched_events_enter_the_queue_too(admin: Any) -> None:
    events = record_many(
        [EventDraft("auth.login", actor=admin), EventDraft("audit.exported", actor=admin)]
    )
    assert list(ReviewItem.objects.values_list("event_id", flat=True)) == [events[1].pk]


def test_an_export_through_the_page_enters_the_queue(viewer: Any, admin: Any) -> None:
    response = client_for(admin).get("/audit/export.csv")
    b"".join(response.streaming_content)  # type: ignore[attr-defined]
    item = ReviewItem.objects.get()
    assert item.event.action == "audit.exported" and item.rule == ReviewRule.AUDIT_EXPORT
    content = client_for(viewer).get(URL).content.decode()
    assert "Audit export" in content and "alice-admin" in content


def test_a_manager_marks_an_event_reviewed_and_the_review_is_audited(
    viewer: Any, admin: Any
) -> None:
    approval = record("operation.approved", actor=admin, target=TARGET, reason="Go ahead")
    item = ReviewItem.objects.get()
    client = client_for(viewer)
    assert "1 event still to review" in client.get(URL).content.decode()

    response = client.post(URL, {"item": item.pk, "comment": "Checked the ticket"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.reviewed_by == viewer and item.comment == "Checked the ticket"
    reviewed = AuditEvent.objects.get(action="audit.reviewed")
    assert item.review_seq == reviewed.seq
    assert reviewed.actor == viewer and reviewed.reason == "Checked the ticket"
    assert reviewed.target_type == "audit.event" and reviewed.target_id == str(approval.seq)
    assert reviewed.data == {"rule": "approval", "event_seq": approval.seq}
    assert ReviewItem.objects.count() == 1  # a review is not itself queued
    assert verify_chain().ok

    content = client.get(URL).content.decode()
    assert "Nothing to review." in content and "Nothing waits for review" in content
    content = client.get(URL + "?state=reviewed").content.decode()
    assert "Checked the ticket" in content and "victor-viewer" in content


def test_nobody_reviews_their_own_action_and_the_refusal_is_audited(admin: Any) -> None:
    record("operation.approved", actor=admin, target=TARGET)
    item = ReviewItem.objects.get()
    client = client_for(admin)
    assert "Your own action: another manager reviews it." in client.get(URL).content.decode()
    response = client.post(URL, {"item": item.pk, "comment": "Fine by me"})
    assert response.status_code == 400
    assert "You cannot review your own action" in response.content.decode()
    item.refresh_from_db()
    assert item.reviewed_at is None
    refused = AuditEvent.objects.get(action="audit.review_refused")
    assert refused.outcome == "denied" and refused.actor == admin
    assert not AuditEvent.objects.filter(action="audit.reviewed").exists()


def test_an_event_is_reviewed_once(viewer: Any, admin: Any, second_admin: Any) -> None:
    record("audit.exported", actor=admin)
    item = ReviewItem.objects.get()
    assert client_for(viewer).post(URL, {"item": item.pk, "comment": "ok"}).status_code == 302
    response = client_for(second_admin).post(URL, {"item": item.pk, "comment": "me too"})
    assert response.status_code == 400
    assert "already reviewed" in response.content.decode()
    item.refresh_from_db()
    assert item.reviewed_by == viewer and item.comment == "ok"
    assert AuditEvent.objects.filter(action="audit.reviewed").count() == 1
    assert AuditEvent.objects.get(action="audit.review_refused").actor == second_admin


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"comment": "no item"}, "Choose an event of the queue"),
        ({"item": "abc", "comment": "x"}, "Choose an event of the queue"),
        ({"item": "99999999", "comment": "x"}, "Choose an event of the queue"),
        ({"item": "9" * 40, "comment": "x"}, "Choose an event of the queue"),
        ({"comment": "   "}, "Choose an event of the queue"),
    ],
)
def test_bad_input_gets_a_message_never_a_500(
    viewer: Any, admin: Any, data: dict[str, str], message: str
) -> None:
    record("audit.exported", actor=admin)
    response = client_for(viewer).post(URL, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert ReviewItem.objects.get().reviewed_at is None


def test_an_empty_or_overlong_comment_is_refused_with_nothing_saved(
    viewer: Any, admin: Any
) -> None:
    record("audit.exported", actor=admin)
    item = ReviewItem.objects.get()
    client = client_for(viewer)
    response = client.post(URL, {"item": item.pk, "comment": "  "})
    assert response.status_code == 400 and "the comment is required" in response.content.decode()
    response = client.post(URL, {"item": item.pk, "comment": "x" * 2001})
    assert response.status_code == 400 and "longer than 2000" in response.content.decode()
    item.refresh_from_db()
    assert item.reviewed_at is None
    assert not AuditEvent.objects.filter(action__startswith="audit.review").exists()


def test_it_says_how_long_the_oldest_event_has_waited(viewer: Any, admin: Any) -> None:
    with time_machine.travel(timezone.now() - timedelta(days=3), tick=False):
        record("operation.gate_overridden", actor=admin, target=TARGET)
    record("audit.exported", actor=admin)
    content = client_for(viewer).get(URL).content.decode()
    assert "2 events still to review" in content
    assert "the oldest waiting since" in content and "3\xa0days" in content


def test_it_pages_by_keyset_newest_first(viewer: Any, admin: Any) -> None:
    record_many([EventDraft("audit.exported", actor=admin) for _ in range(55)])
    ids = list(ReviewItem.objects.order_by("-id").values_list("id", flat=True))
    client = client_for(viewer)
    first = client.get(URL)
    assert [item.pk for item, _ in first.context["items"]] == ids[:50]
    assert first.context["next_query"] == f"before={ids[49]}"
    second = client.get(f"{URL}?{first.context['next_query']}")
    assert [item.pk for item, _ in second.context["items"]] == ids[50:]
    assert second.context["next_query"] == ""
    past = client.get(f"{URL}?before={ids[-1]}").content.decode()
    assert "Nothing older in this list." in past


def test_unknown_list_and_tampered_cursor_are_named_not_failed(viewer: Any) -> None:
    response = client_for(viewer).get(URL + "?state=<script>x</script>&before=1%20OR%201=1")
    assert response.status_code == 200
    content = response.content.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in content and "<script>x" not in content
    assert "ignored: it is" in content and "ignored: not a page of this list" in content


def test_the_empty_queue_says_what_to_do(viewer: Any) -> None:
    content = client_for(viewer).get(URL).content.decode()
    assert "Nothing waits for review" in content and "See the reviewed events" in content
    content = client_for(viewer).get(URL + "?state=reviewed").content.decode()
    assert "No event has been reviewed yet." in content


def test_htmx_gets_only_the_queue_fragment(viewer: Any, admin: Any) -> None:
    record("audit.exported", actor=admin)
    item = ReviewItem.objects.get()
    client = client_for(viewer)
    content = client.get(URL, headers={"HX-Request": "true"}).content.decode()
    assert 'id="queue"' in content and "<nav" not in content
    response = client.post(
        URL + "?state=unreviewed",
        {"item": item.pk, "comment": "seen"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert 'id="queue"' in response.content.decode() and "<nav" not in response.content.decode()
    assert ReviewItem.objects.get().reviewed_by == viewer


def test_the_wrong_method_and_the_wrong_role_are_refused(viewer: Any, nobody: Any) -> None:
    assert client_for(viewer).put(URL).status_code == 405
    assert client_for(nobody).get(URL).status_code == 403
    assert client_for(nobody).post(URL, {"item": "1", "comment": "x"}).status_code == 403


def test_the_roles_migration_grants_review_to_viewers_and_verify_to_admins(db: None) -> None:
    def codenames(role: str) -> set[str]:
        group = Group.objects.get(name=role)
        return set(group.permissions.values_list("codename", flat=True))

    assert "review_auditevent" in codenames("viewer")
    assert "verify_auditevent" not in codenames("viewer")
    assert "verify_auditevent" not in codenames("operator")
    assert {"review_auditevent", "verify_auditevent"} <= codenames("admin")


def test_the_integrity_page_is_the_admins(viewer: Any, operator: Any, admin: Any) -> None:
    assert client_for(viewer).get("/audit/integrity/").status_code == 403
    assert client_for(operator).get("/audit/integrity/").status_code == 403
    assert client_for(admin).get("/audit/integrity/").status_code == 200
    assert "Check integrity" not in client_for(viewer).get("/audit/").content.decode()
    assert "Check integrity" in client_for(admin).get("/audit/").content.decode()
