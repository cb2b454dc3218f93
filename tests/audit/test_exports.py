"""Exports of the audit history: parsed back and compared with the rows, the chain proof in
their header, the export itself audited, and who may export."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.http import StreamingHttpResponse

from apps.audit.exports import HEADINGS
from apps.audit.models import AuditEvent
from apps.audit.records import AuditTarget, record
from tests.conftest import client_for

pytestmark = pytest.mark.core

EXPORTED_AT = datetime(2026, 3, 1, 12, 34, 56, tzinfo=UTC)


def body(response: Any) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return response.getvalue().decode()


def parse_csv(text: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    first, rest = text.split("\r\n", 1)
    assert first.startswith("# ")
    return json.loads(first[2:]), list(csv.DictReader(io.StringIO(rest)))


def parse_jsonl(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in text.splitlines()]
    return lines[0]["export"], lines[1:]


@pytest.fixture
def events(admin: Any) -> list[AuditEvent]:
    return [
        record(
            "services.target.updated",
            actor=admin,
            target=AuditTarget("services.target", "3", 'api, "prod"\nline two'),
            reason="Scale, for the sale",
            data={"changes": {"replicas": ["2", "4"]}, "token": "s3cret"},
        ),
        record("access.denied", actor=None, actor_label="mallory", outcome="denied"),
        record("operation.queued", actor=admin, operation_id=9, outcome="failed"),
    ]


def test_it_exports_csv_that_parses_back_to_the_rows(viewer: Any, events: list[AuditEvent]) -> None:
    client = client_for(viewer)
    with time_machine.travel(EXPORTED_AT, tick=False):
        response = client.get("/audit/export.csv?outcome=succeeded&actor=alice-admin")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit-20260301-123456.csv"'
    header, rows = parse_csv(body(response))
    assert list(rows[0].keys()) == HEADINGS
    assert [row["action"] for row in rows] == ["services.target.updated"]
    (row,) = rows
    event = AuditEvent.objects.get(seq=int(row["seq"]))
    assert row["actor"] == "alice-admin"
    assert row["target_label"] == 'api, "prod"\nline two'
    assert row["reason"] == "Scale, for the sale"
    assert json.loads(row["data"]) == event.data
    assert json.loads(row["data"])["token"] == "********"
    assert row["hash"] == event.hash
    assert row["prev_hash"] == event.prev_hash
    assert row["created_at"] == event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert header["filter"] == "outcome=succeeded&actor=alice-admin"
    assert header["summary"] == "actor is alice-admin; outcome is succeeded"
    assert header["exported_at"] == "2026-03-01T12:34:56Z"
    assert header["last_seq"] == event.seq
    assert header["last_hash"] == event.hash


def test_it_exports_json_lines_newest_first(viewer: Any, events: list[AuditEvent]) -> None:
    response = client_for(viewer).get("/audit/export.jsonl?action=")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.jsonl"')
    header, rows = parse_jsonl(body(response))
    stored = list(AuditEvent.objects.filter(seq__lte=header["last_seq"]).order_by("-seq"))
    assert [row["seq"] for row in rows] == [event.seq for event in stored]
    for row, event in zip(rows, stored, strict=True):
        assert row["hash"] == event.hash
        assert row["action"] == event.action
        assert row["data"] == event.data
        assert row["operation_id"] == event.operation_id
    # The chain proof: the header names the newest exported event, and its hash.
    assert header["last_seq"] == rows[0]["seq"]
    assert header["last_hash"] == rows[0]["hash"]
    assert header["summary"] == "all events"


def test_the_header_hash_can_be_checked_against_the_chain(viewer: Any, events: Any) -> None:
    header, rows = parse_jsonl(body(client_for(viewer).get("/audit/export.jsonl?outcome=denied")))
    assert [row["action"] for row in rows] == ["access.denied"]
    assert AuditEvent.objects.get(seq=header["last_seq"]).compute_hash() == header["last_hash"]


def test_the_export_is_audited_before_it_streams(viewer: Any, events: Any) -> None:
    response = client_for(viewer).get("/audit/export.csv?outcome=failed&before=99")
    exported = AuditEvent.objects.filter(action="audit.exported").get()
    header, rows = parse_csv(body(response))
    assert exported.actor_label == "victor-viewer"
    assert exported.data == {
        "format": "csv",
        "filter": "outcome=failed",
        "last_seq": header["last_seq"],
        "last_hash": header["last_hash"],
    }
    # Its own record comes after the newest exported event, so it is not in the export.
    assert exported.seq > header["last_seq"]
    assert [row["action"] for row in rows] == ["operation.queued"]


def test_an_export_holds_only_what_existed_when_it_began(viewer: Any, events: Any) -> None:
    response = client_for(viewer).get("/audit/export.jsonl?actor=alice-admin")
    record("operation.started", actor=events[0].actor)  # written while streaming
    header, rows = parse_jsonl(body(response))
    assert "operation.started" not in [row["action"] for row in rows]
    assert rows[0]["seq"] == header["last_seq"]


def test_an_empty_export_says_so_in_its_header(viewer: Any, events: Any) -> None:
    header, rows = parse_csv(body(client_for(viewer).get("/audit/export.csv?actor=nobody-here")))
    assert rows == []
    assert header["last_seq"] is None
    assert header["last_hash"] is None


def test_a_reversed_range_exports_nothing_and_says_why(viewer: Any, events: Any) -> None:
    url = "/audit/export.jsonl?since=2026-03-02&until=2026-03-01"
    header, rows = parse_jsonl(body(client_for(viewer).get(url)))
    assert rows == []
    assert header["summary"] == "The start date is after the end date"


def test_ignored_filters_are_named_in_the_header(viewer: Any, events: Any) -> None:
    header, rows = parse_csv(body(client_for(viewer).get("/audit/export.csv?outcome=exploded")))
    assert len(header["ignored"]) == 1
    assert header["ignored"][0].startswith('Outcome "exploded" ignored')
    assert {row["action"] for row in rows} >= {e.action for e in events}


def test_hostile_text_is_exported_as_data(viewer: Any) -> None:
    attack = "=cmd|'/c calc'!A1 '; DROP TABLE audit_auditevent; -- <script>"
    record("test.hostile", actor=None, reason=attack)
    client = client_for(viewer)
    header, rows = parse_csv(body(client.get("/audit/export.csv", {"q": "DROP TABLE"})))
    # A spreadsheet would run it as a formula: the CSV cell says it is text, as spreadsheets
    # do themselves, and the header says so; JSON Lines keeps it exactly.
    assert [row["reason"] for row in rows] == [f"'{attack}"]
    assert header["formulas_neutralised"] is True
    lines = body(client.get("/audit/export.jsonl", {"q": "DROP TABLE"})).splitlines()
    assert json.loads(lines[1])["reason"] == attack


def test_a_user_without_a_role_may_not_export(nobody: Any, events: Any) -> None:
    for url in ("/audit/export.csv", "/audit/export.jsonl"):
        assert client_for(nobody).get(url).status_code == 403
    assert not AuditEvent.objects.filter(action="audit.exported").exists()
    assert AuditEvent.objects.filter(action="access.denied", actor_label="nora-norole").count() == 2


def test_exports_refuse_post(viewer: Any) -> None:
    assert client_for(viewer).post("/audit/export.csv").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client: Any) -> None:
    response = client.get("/audit/export.csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
