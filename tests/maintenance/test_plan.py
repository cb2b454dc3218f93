"""A weekly window run through simulated days under controlled time: each message of the
communication plan goes out exactly once at its instant, across both DST changes in
Europe/London, with two ticks in one minute, and with a worker that dies between sending and
recording."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import override_settings

from apps.maintenance import beat, communication
from apps.maintenance.choices import OccurrenceState, StageKind
from apps.maintenance.models import Occurrence, Stage, StageOutcome
from apps.services.models import Service
from tests.maintenance.helpers import LONDON, schedule

WEEKLY = "FREQ=WEEKLY;BYDAY=SU"


@pytest.fixture
def service(db: None) -> Service:
    return Service.objects.create(name="shop-api", slug="shop-api", team="Shop")


def subjects() -> list[str]:
    return [str(message.subject) for message in mail.outbox]


def run_minutes(start: datetime, end: datetime, *, twice: bool = False) -> Iterator[datetime]:
    """Tick every minute from ``start`` to ``end`` (twice per minute when asked)."""
    moment = start
    with time_machine.travel(moment, tick=False) as traveller:
        while moment <= end:
            traveller.move_to(moment)
            beat.tick(moment)
            if twice:
                beat.tick(moment)
            yield moment
            moment += timedelta(minutes=1)


def sent_at(kind: str, occurrence: Occurrence) -> datetime | None:
    stage = Stage.objects.get(occurrence=occurrence, kind=kind)
    assert stage.outcome in (StageOutcome.SENT, StageOutcome.PENDING), stage.note
    return stage.finished_at


def _week_around(sunday: datetime, operator: Any, service: Service, twice: bool) -> None:
    """Schedule a weekly 02:00–04:00 London window 8+ days before ``sunday`` (a date) and run
    the beat minute by minute over the key hours of eight days."""
    created = sunday - timedelta(days=9)
    with time_machine.travel(created, tick=False):
        window = schedule(
            operator,
            [service],
            datetime(sunday.year, sunday.month, sunday.day, 2, tzinfo=LONDON),
            datetime(sunday.year, sunday.month, sunday.day, 4, tzinfo=LONDON),
            recurrence=WEEKLY,
        )
    occurrence = window.occurrences.order_by("start_at").first()
    assert occurrence is not None
    expected = {
        StageKind.ANNOUNCE: occurrence.start_at - timedelta(days=7),
        StageKind.REMIND: occurrence.start_at - timedelta(days=1),
        StageKind.IN_PROGRESS: occurrence.start_at,
        StageKind.COMPLETED: occurrence.end_at,
    }
    # Minute by minute around each instant (the hours between hold nothing due), for eight
    # simulated days: from the day before the announcement to the day after the end.
    for instant in expected.values():
        for _ in run_minutes(
            instant - timedelta(minutes=3), instant + timedelta(minutes=3), twice=twice
        ):
            pass
    with time_machine.travel(occurrence.end_at + timedelta(days=1), tick=False):
        beat.tick(occurrence.end_at + timedelta(days=1))
    for kind, instant in expected.items():
        assert sent_at(kind, occurrence) == instant, kind
    occurrence.refresh_from_db()
    assert occurrence.state == OccurrenceState.COMPLETED
    assert occurrence.started_at == expected[StageKind.IN_PROGRESS]
    assert occurrence.ended_at == expected[StageKind.COMPLETED]
    # Every message went out once (the next Sundays' announcements fall in these hours too).
    keys = [message.extra_headers["Message-ID"] for message in mail.outbox]
    assert len(keys) == len(set(keys))
    ours = [
        message.subject.split(":")[0]
        for message in mail.outbox
        if message.extra_headers["Message-ID"]
        in {f"<{stage.dedupe_key}@opsportal>" for stage in occurrence.stages.all()}
    ]
    assert ours == [
        "[OpsPortal] Planned maintenance",
        "[OpsPortal] Reminder",
        "[OpsPortal] Maintenance in progress",
        "[OpsPortal] Maintenance completed",
    ]


def test_it_sends_each_stage_once_at_its_instant_across_the_march_dst_change(
    operator: Any, service: Service
) -> None:
    # The last Sunday of March 2025: London jumps 01:00 GMT → 02:00 BST. 02:00–04:00 local
    # is 01:00–03:00 UTC that day, while the announcement (a week before) was in GMT.
    _week_around(datetime(2025, 3, 30, tzinfo=UTC), operator, service, twice=False)
    occurrence = Occurrence.objects.order_by("start_at").first()
    assert occurrence is not None
    assert occurrence.start_at == datetime(2025, 3, 30, 1, tzinfo=UTC)
    assert occurrence.end_at == datetime(2025, 3, 30, 3, tzinfo=UTC)
    announce = Stage.objects.get(occurrence=occurrence, kind=StageKind.ANNOUNCE)
    # T−7 days is an exact 168 hours: 01:00 UTC, which was 01:00 GMT on the 23rd.
    assert announce.due_at == datetime(2025, 3, 23, 1, tzinfo=UTC)
    assert "Sun 30 Mar 2025 02:00–04:00 BST (Europe/London); 01:00–03:00 UTC" in mail.outbox[0].body


def test_it_sends_each_stage_once_across_the_october_change_with_two_ticks_a_minute(
    operator: Any, service: Service
) -> None:
    # The last Sunday of October 2025: 02:00 BST → 01:00 GMT; 02:00–04:00 is GMT, UTC.
    _week_around(datetime(2025, 10, 26, tzinfo=UTC), operator, service, twice=True)
    occurrence = Occurrence.objects.order_by("start_at").first()
    assert occurrence is not None
    assert (occurrence.start_at, occurrence.end_at) == (
        datetime(2025, 10, 26, 2, tzinfo=UTC),
        datetime(2025, 10, 26, 4, tzinfo=UTC),
    )


def test_the_next_sundays_follow_the_wall_clock(operator: Any, service: Service) -> None:
    with time_machine.travel(datetime(2025, 3, 1, tzinfo=UTC), tick=False):
        window = schedule(
            operator,
            [service],
            datetime(2025, 3, 23, 2, tzinfo=LONDON),
            datetime(2025, 3, 23, 4, tzinfo=LONDON),
            recurrence=WEEKLY,
        )
    starts = list(window.occurrences.order_by("start_at").values_list("start_at", flat=True))
    assert len(starts) == 8  # MAINTENANCE_OCCURRENCES_AHEAD
    assert [start.astimezone(LONDON).hour for start in starts] == [2] * 8
    assert [start.hour for start in starts[:3]] == [2, 1, 1]  # GMT, then BST


def test_a_start_in_the_spring_gap_is_read_before_the_jump(operator: Any, service: Service) -> None:
    # 01:30 does not exist in London on 30 March 2025: read with the offset before the jump
    # (01:30 GMT = 02:30 BST), the end kept.
    with time_machine.travel(datetime(2025, 3, 1, tzinfo=UTC), tick=False):
        window = schedule(
            operator,
            [service],
            datetime(2025, 3, 23, 1, 30, tzinfo=LONDON),
            datetime(2025, 3, 23, 3, 0, tzinfo=LONDON),
            recurrence=WEEKLY,
        )
    second = window.occurrences.order_by("start_at")[1]
    assert second.start_at == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert second.start_at.astimezone(LONDON).strftime("%H:%M %Z") == "02:30 BST"
    assert second.end_at.astimezone(LONDON).strftime("%H:%M %Z") == "03:00 BST"


def test_a_worker_dying_between_sending_and_recording_never_sends_twice(
    operator: Any, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2025, 6, 15, 2, tzinfo=LONDON)
    with time_machine.travel(start - timedelta(days=10), tick=False):
        schedule(operator, [service], start, start + timedelta(hours=2))
    announce = Stage.objects.get(kind=StageKind.ANNOUNCE)
    real_record = communication._record

    def die(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("worker killed")

    monkeypatch.setattr(communication, "_record", die)
    with time_machine.travel(announce.due_at, tick=False), pytest.raises(SystemExit):
        beat.tick(announce.due_at)
    assert len(mail.outbox) == 1  # it went out, and was never recorded
    monkeypatch.setattr(communication, "_record", real_record)
    for minutes in (1, 2, 30):
        moment = announce.due_at + timedelta(minutes=minutes)
        with time_machine.travel(moment, tick=False):
            beat.tick(moment)
    assert len(mail.outbox) == 1
    announce.refresh_from_db()
    assert announce.outcome == StageOutcome.UNCONFIRMED
    assert "not sent again" in announce.note


def test_a_stage_missed_while_down_is_sent_late_or_skipped_when_over(
    operator: Any, service: Service
) -> None:
    start = datetime(2025, 6, 15, 2, tzinfo=LONDON)
    with time_machine.travel(start - timedelta(days=10), tick=False):
        schedule(operator, [service], start, start + timedelta(hours=2))
    occurrence = Occurrence.objects.get()
    # Down from before the announcement until the day before: announcement late, with a note.
    late = occurrence.start_at - timedelta(days=3)
    with time_machine.travel(late, tick=False):
        beat.tick(late)
    announce = Stage.objects.get(kind=StageKind.ANNOUNCE)
    assert (announce.outcome, announce.late) == (StageOutcome.SENT, True)
    assert "Sent late" in mail.outbox[0].body
    # Down through the whole window: the reminder and "in progress" are skipped with the
    # reason, the occurrence is recorded as missed, nothing is switched.
    after = occurrence.end_at + timedelta(hours=1)
    with time_machine.travel(after, tick=False):
        beat.tick(after)
    outcomes = dict(Stage.objects.values_list("kind", "outcome"))
    assert outcomes[StageKind.REMIND] == StageOutcome.SKIPPED
    assert outcomes[StageKind.IN_PROGRESS] == StageOutcome.SKIPPED
    occurrence.refresh_from_db()
    assert occurrence.state == OccurrenceState.SKIPPED
    assert len(mail.outbox) == 1


@override_settings(MAINTENANCE_NOTIFY_EMAILS=["status@example.com"])
def test_short_notice_is_announced_at_once_and_says_why(operator: Any, service: Service) -> None:
    now = datetime(2025, 6, 1, 9, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        schedule(
            operator,
            [service],
            now + timedelta(days=2),
            now + timedelta(days=2, hours=1),
            short_notice_reason="Security patch for CVE-2025-1234",
        )
        beat.tick(now)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [operator.email, "status@example.com"] or mail.outbox[0].to == [
        "status@example.com"
    ]
    assert (
        "Short notice (less than 7 days): Security patch for CVE-2025-1234" in mail.outbox[0].body
    )
    assert mail.outbox[0].extra_headers["Message-ID"].startswith("<maintenance-stage-")
