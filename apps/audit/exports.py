"""Exports of the audit history as CSV and JSON Lines, streamed in chunks so that memory stays
flat whatever the number of events.

Each export starts with a header that states the filter, the time of the export and the seq
and hash of the newest event it holds: with that hash, anyone can later check the export
against the chain (``audit_verify``, or the event of that seq in the database).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.filters import AuditFilter
from apps.audit.models import AuditEvent

CHUNK_SIZE = 2000
# The database columns an export reads, in the order of the CSV columns.
COLUMNS = (
    "seq",
    "created_at",
    "actor_label",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "target_label",
    "operation_id",
    "reason",
    "data",
    "ip",
    "request_id",
    "hash",
    "prev_hash",
)
# What the reader of an export sees: "actor" is the username as it was at the time.
HEADINGS = ["actor" if column == "actor_label" else column for column in COLUMNS]


@dataclass(frozen=True)
class ExportHeader:
    """What an export says about itself before its first event."""

    format: str
    filter: str  # the query string of the request
    summary: str  # the filters that were applied, in words
    ignored: list[str]
    exported_at: datetime
    last_seq: int | None
    last_hash: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "filter": self.filter,
            "summary": self.summary,
            "ignored": self.ignored,
            "exported_at": self.exported_at.isoformat().replace("+00:00", "Z"),
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "columns": HEADINGS,
        }

    @property
    def filename(self) -> str:
        return f"audit-{self.exported_at:%Y%m%d-%H%M%S}.{self.format}"


@dataclass(frozen=True)
class Export:
    """An export fixed in time: its header and the events up to the newest one it names."""

    header: ExportHeader
    events: QuerySet[AuditEvent]


def prepare_export(audit_filter: AuditFilter, query_string: str, file_format: str) -> Export:
    """Fix what an export holds before anything is streamed: the newest matching event (one
    query) bounds the rows, so events written while the export streams stay out of it and the
    header's hash is the hash of its first row."""
    events = audit_filter.events()
    newest = events.values_list("seq", "hash").first()
    last_seq, last_hash = newest if newest else (None, None)
    header = ExportHeader(
        format=file_format,
        filter=query_string,
        summary=audit_filter.summary(),
        ignored=[str(problem) for problem in audit_filter.problems],
        exported_at=timezone.now().astimezone(UTC).replace(microsecond=0),
        last_seq=last_seq,
        last_hash=last_hash,
    )
    bounded = events.filter(seq__lte=last_seq) if last_seq is not None else events.none()
    return Export(header, bounded)


def _rows(events: QuerySet[AuditEvent]) -> Iterator[tuple[Any, ...]]:
    # values_list: no model instances, and only the exported columns leave the database.
    return events.values_list(*COLUMNS).iterator(chunk_size=CHUNK_SIZE)


def _as_record(row: tuple[Any, ...]) -> dict[str, Any]:
    record = dict(zip(HEADINGS, row, strict=True))
    record["created_at"] = row[1].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return record


def _chunks(lines: Iterator[str]) -> Iterator[str]:
    """Join lines into pieces of about CHUNK_SIZE events: one write per line would make the
    server's per-piece overhead the cost of a large export."""
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= CHUNK_SIZE:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)


# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a ' in front (what
    spreadsheets themselves do to show text); JSON Lines keeps every value exactly."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return f"'{value}"
    return value


def csv_lines(export: Export) -> Iterator[str]:
    """A `# ` comment line with the header as JSON, the column names, then one row per event;
    data is JSON text in its cell, and text that would run as a formula starts with '."""
    header = {**export.header.as_dict(), "formulas_neutralised": True}
    yield "# " + json.dumps(header, sort_keys=True) + "\r\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADINGS)
    yield buffer.getvalue()

    def rows() -> Iterator[str]:
        for row in _rows(export.events):
            record = _as_record(row)
            record["data"] = json.dumps(record["data"], sort_keys=True)
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([spreadsheet_safe(value) for value in record.values()])
            yield buffer.getvalue()

    yield from _chunks(rows())


def jsonl_lines(export: Export) -> Iterator[str]:
    """{"export": header} on the first line, then one JSON object per event."""
    yield json.dumps({"export": export.header.as_dict()}, sort_keys=True) + "\n"
    yield from _chunks(
        json.dumps(_as_record(row), sort_keys=True) + "\n" for row in _rows(export.events)
    )


FORMATS = {
    "csv": (csv_lines, "text/csv; charset=utf-8"),
    "jsonl": (jsonl_lines, "application/x-ndjson; charset=utf-8"),
}
