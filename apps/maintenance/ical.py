"""The windows as an RFC 5545 calendar: text values escaped (backslash, comma, semicolon,
newline), lines folded at 75 octets, CRLF line ends. The message stays text: HTML in it is
just characters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.utils import timezone

from apps.maintenance.models import Occurrence


def escape_text(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space."""
    encoded = line.encode()
    if len(encoded) <= 75:
        return line
    parts: list[str] = []
    current = b""
    for char in line:
        piece = char.encode()
        if len(current) + len(piece) > (75 if not parts else 74):
            parts.append(current.decode())
            current = b""
        current += piece
    parts.append(current.decode())
    return "\r\n ".join(parts)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(occurrences: Iterable[Occurrence], base_url: str) -> str:
    now = _stamp(timezone.now())
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//OpsPortal//Maintenance windows//EN",
        "CALSCALE:GREGORIAN",
        "X-WR-CALNAME:Maintenance windows",
    ]
    for occurrence in occurrences:
        window = occurrence.window
        description = (
            f"{window.get_impact_display()}\n{window.message}\n"
            f"{base_url}{window.get_absolute_url()}"
        )
        lines += [
            "BEGIN:VEVENT",
            f"UID:maintenance-{window.pk}-{int(occurrence.original_start.timestamp())}@opsportal",
            f"DTSTAMP:{now}",
            f"DTSTART:{_stamp(occurrence.start_at)}",
            f"DTEND:{_stamp(occurrence.end_at)}",
            f"SUMMARY:{escape_text('Maintenance: ' + window.title)}",
            f"DESCRIPTION:{escape_text(description)}",
            f"URL:{base_url}{window.get_absolute_url()}",
            f"STATUS:{'CANCELLED' if occurrence.state == 'cancelled' else 'CONFIRMED'}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
