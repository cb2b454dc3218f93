"""Terminating a blocker on a real Celery worker: the whole path, view to audit. The other
datastore tests call the handlers in-process; this one proves the worker path once."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.backups.models import DatabaseTarget
from apps.datastores.operations import PG_TERMINATE
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.conftest import client_for
from tests.datastores.conftest import Blocked, server_kwargs
from tests.factories import PASSWORD
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")


def test_an_admin_terminates_the_blocker_through_the_portal_on_a_worker(
    admin: Any, database_target: DatabaseTarget, blocked: Blocked
) -> None:
    client = client_for(admin)
    form = {
        "target": database_target.pk,
        "p-pid": blocked.blocker_pid,
        "reason": "the blocker holds the accounts row",
        "idempotency_key": "worker-1",
        "confirmed": "1",
        "password": PASSWORD,
    }
    response = client.post(reverse("operations:start", args=[PG_TERMINATE]), form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    operation = Operation.objects.get(kind=PG_TERMINATE)
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what="the operation"
    )
    operation.refresh_from_db()
    assert operation.state == State.SUCCEEDED, operation.error
    with psycopg.connect(**server_kwargs(database_target.database), autocommit=True) as check:
        gone = check.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (blocked.blocker_pid,)
        ).fetchone()
    assert gone is None
    event = AuditEvent.objects.get(action="datastores.backend_terminated")
    assert event.operation_id == operation.pk
    assert event.data["pid"] == blocked.blocker_pid
    assert "UPDATE accounts SET balance = balance + 1" in event.data["query"]
