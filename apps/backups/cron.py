"""Backup schedules as cron expressions, in UTC: five fields (minute, hour, day of month,
month, day of week) with ``*``, lists, ranges and ``/steps``, or a shortcut (``@hourly``,
``@daily``, ``@weekly``, ``@monthly``). ``parse`` refuses anything else with a message that
says which field is wrong; ``next_after`` gives the first due time after a moment.

Day of month and day of week combine as in cron: when both are restricted, either matches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.core.exceptions import ValidationError

SHORTCUTS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),  # 0 and 7 are both Sunday
)
# Far enough for "29 2 *" (a leap day) to be found.
SEARCH_DAYS = 8 * 366


class CronError(ValueError):
    """The expression is not a schedule; the message says what is wrong, for people."""


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday … 6 = Sunday (Python's weekday())
    any_day: bool
    any_weekday: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.weekday() in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_day
        return by_day or by_weekday


def _field(text: str, name: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"The {name} field has a bad step {part!r}.")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            if not (first_text.isdigit() and last_text.isdigit()):
                raise CronError(f"The {name} field has a bad range {part!r}.")
            first, last = int(first_text), int(last_text)
        elif body.isdigit():
            first = int(body)
            last = high if step_text else first
        else:
            raise CronError(f"The {name} field has {part!r}: use numbers, '*', '-', ',' and '/'.")
        if first < low or last > high or first > last:
            raise CronError(f"The {name} field must stay within {low}–{high} (got {part!r}).")
        values.update(range(first, last + 1, step))
    return values


def parse(expression: str) -> Cron:
    """The schedule of ``expression``, or CronError saying what is wrong."""
    text = " ".join(expression.split())
    text = SHORTCUTS.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(
            "A schedule has five fields, minute hour day-of-month month day-of-week "
            "(e.g. '15 2 * * *' for 02:15 UTC every day), or @hourly, @daily, @weekly, @monthly."
        )
    minute, hour, day, month, weekday = (
        _field(part, name, low, high) for part, (name, low, high) in zip(parts, FIELDS, strict=True)
    )
    # cron's 0/7 = Sunday, 1 = Monday; Python's 0 = Monday, 6 = Sunday.
    weekdays = frozenset((value - 1) % 7 for value in weekday)
    return Cron(
        minutes=tuple(sorted(minute)),
        hours=tuple(sorted(hour)),
        days=frozenset(day),
        months=frozenset(month),
        weekdays=weekdays,
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
    )


def next_after(cron: Cron, moment: datetime) -> datetime:
    """The first due time strictly after ``moment`` (UTC, whole minutes)."""
    moment = moment.astimezone(UTC)
    start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.date()
    for _ in range(SEARCH_DAYS):
        if cron.matches_day(day):
            for hour in cron.hours:
                for minute in cron.minutes:
                    candidate = datetime.combine(day, time(hour, minute), tzinfo=UTC)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    raise CronError("This schedule never comes due (a day that does not exist?).")


def validate(expression: str) -> None:
    """For a model field: the expression must parse and come due."""
    if not expression.strip():
        return
    try:
        next_after(parse(expression), datetime(2000, 1, 1, tzinfo=UTC))
    except CronError as exc:
        raise ValidationError(str(exc)) from None
