"""Occurrences of a window, computed in the window's own time zone so that "Sundays
02:00–04:00 Europe/London" stays at 02:00 on the wall clock in summer and in winter.

The wall-clock slot (start and end as local times, without an offset) is what repeats; each
occurrence is then placed in the zone with zoneinfo's rules:

- a local time that does not exist (01:30 on the last Sunday of March in London: clocks
  jump from 01:00 GMT to 02:00 BST) is read with the offset before the jump, so 01:30 GMT,
  which is 02:30 BST: the window starts half an hour later on the wall clock (at the
  instant planned), and its end, which exists, stays where it was;
- a local time that happens twice (01:30 on the last Sunday of October) is the first one
  (fold=0, BST).

"Sundays 02:00–04:00 Europe/London" is never in the gap (the UK's jump is 01:00 → 02:00 and
its repeated hour 01:00–02:00): it runs 01:00–03:00 UTC in summer and 02:00–04:00 UTC in
winter, both transition Sundays included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import DAILY, rrule, rrulestr

MAX_RULE_LENGTH = 500


class BadRecurrence(ValueError):
    pass


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or ValueError with words for people."""
    name = name.strip()
    if not name or name not in _zone_names():
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. Europe/London, UTC).")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone.") from None


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def zone_choices() -> list[str]:
    return sorted(_zone_names())


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _placed(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: the earlier of a repeated hour; a missing hour takes the offset before the jump.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def parse_rule(text: str, first_start: datetime, zone: ZoneInfo) -> rrule:
    """The rule ``text`` (``FREQ=WEEKLY;BYDAY=SU``, with or without ``RRULE:``) from the
    first occurrence's wall-clock start; BadRecurrence when it is not a valid rule or repeats
    more often than daily."""
    text = text.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if len(text) > MAX_RULE_LENGTH:
        raise BadRecurrence(f"The recurrence is too long (at most {MAX_RULE_LENGTH} characters).")
    if "\n" in text or "DTSTART" in text.upper():
        raise BadRecurrence("Write one RRULE line (FREQ=…;…) without DTSTART: the start is above.")
    try:
        rule = rrulestr(text, dtstart=_wall(first_start, zone))
    except (ValueError, TypeError) as exc:
        raise BadRecurrence(f"This is not an RFC 5545 recurrence rule: {exc}.") from None
    if not isinstance(rule, rrule):
        raise BadRecurrence("Write a single RRULE.")
    if rule._freq > DAILY:  # HOURLY, MINUTELY, SECONDLY: not maintenance windows
        raise BadRecurrence("A maintenance window repeats at most daily.")
    return rule


@dataclass(frozen=True)
class Slot:
    original_start: datetime  # where the rule puts it (UTC)
    start: datetime
    end: datetime


def slots_after(
    *,
    start_at: datetime,
    end_at: datetime,
    zone: ZoneInfo,
    recurrence: str,
    after: datetime,
    count: int,
) -> list[Slot]:
    """The next ``count`` occurrences starting strictly after ``after``."""
    if not recurrence:
        return [Slot(start_at, start_at, end_at)] if start_at > after else []
    rule = parse_rule(recurrence, start_at, zone)
    wall_length = _wall(end_at, zone) - _wall(start_at, zone)
    slots = []
    cursor = _wall(after, zone) - timedelta(days=1)  # DST can move an instant by an hour
    for wall_start in rule.xafter(cursor, count=count + 2, inc=False):
        start = _placed(wall_start, zone)
        if start <= after:
            continue
        end = _placed(wall_start + wall_length, zone)
        slots.append(Slot(start, start, end))
        if len(slots) == count:
            break
    return slots


def occurs_after(
    *, start_at: datetime, end_at: datetime, zone: ZoneInfo, recurrence: str, after: datetime
) -> bool:
    return bool(
        slots_after(
            start_at=start_at,
            end_at=end_at,
            zone=zone,
            recurrence=recurrence,
            after=after,
            count=1,
        )
    )
