"""The nightly check of the audit chain: quiet when intact, an alarm when not."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from apps.audit.models import AuditEvent
from apps.audit.records import record
from apps.audit.tasks import verify_audit_chain
from tests.audit.test_chain import _with_triggers_off

pytestmark = pytest.mark.core


def test_an_intact_chain_raises_no_alarm(admin: Any) -> None:
    record("test.one", actor=admin)
    assert verify_audit_chain() == {"ok": True, "checked": 1}
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="audit.chain_broken").exists()


def test_an_altered_event_alerts_the_admins_and_is_recorded(admin: Any, operator: Any) -> None:
    record("test.one", actor=operator)
    second = record("test.two", actor=operator, reason="original")
    record("test.three", actor=operator)
    _with_triggers_off(
        "UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["rewritten", second.seq]
    )

    result = verify_audit_chain()

    assert result == {"ok": False, "checked": 1, "first_bad_seq": 2}
    [message] = mail.outbox
    assert message.to == [admin.email]
    assert "Event #2 was altered" in message.body
    alarm = AuditEvent.objects.get(action="audit.chain_broken")
    assert alarm.outcome == "failed"
    assert alarm.data["first_bad_seq"] == 2
