from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apps.maintenance import actions
from apps.maintenance.choices import Impact
from apps.maintenance.models import Window

LONDON = ZoneInfo("Europe/London")


def window_data(
    services: list[Any], start: datetime, end: datetime, **fields: Any
) -> actions.WindowData:
    values: dict[str, Any] = {
        "title": "Database upgrade",
        "services": services,
        "environments": [],
        "time_zone": "Europe/London",
        "start_at": start,
        "end_at": end,
        "recurrence": "",
        "impact": Impact.DEGRADED,
        "message": "The shop is read-only.",
        "maintenance_mode": False,
        "short_notice_reason": "",
    }
    values.update(fields)
    return actions.WindowData(**values)


def schedule(
    actor: Any, services: list[Any], start: datetime, end: datetime, **fields: Any
) -> Window:
    return actions.do_create_window(actor, window_data(services, start, end, **fields))
