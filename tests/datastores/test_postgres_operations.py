"""Cancel, terminate and VACUUM through the operations engine against the real server: the
handlers called in this process (the worker path has its own test in test_worker.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.backups.models import DatabaseTarget
from apps.datastores.operations import PG_CANCEL, PG_TERMINATE, PG_VACUUM
from apps.operations import actions
from apps.operations.progress import OperationFailed
from tests.conftest import client_for
from tests.datastores.conftest import Blocked, open_session, run_handler, server_kwargs
from tests.support.waiting import wait_for


def _alive(database: str, pid: int) -> bool:
    with psycopg.connect(**server_kwargs(database), autocommit=True) as watcher:
        return (
            watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            is not None
        )


def test_terminating_the_blocker_ends_it_and_the_audit_keeps_pid_and_query(
    admin: Any, database_target: DatabaseTarget, blocked: Blocked
) -> None:
    operation = actions.do_start_operation(
        admin, PG_TERMINATE, str(database_target.pk), {"pid": blocked.blocker_pid}, "stuck lock"
    )
    run_handler(operation)
    assert not _alive(database_target.database, blocked.blocker_pid)
    # The waiter got its lock once the blocker's transaction was rolled back.
    blocked.thread.join(10)
    assert blocked.waiter_error is None
    event = AuditEvent.objects.get(action="datastores.backend_terminated")
    assert event.operation_id == operation.pk
    assert event.data["pid"] == blocked.blocker_pid
    assert "UPDATE accounts SET balance = balance + 1 WHERE id = 1" in event.data["query"]
    assert event.data["application"] == "test-blocker"


def test_cancel_stops_the_query_and_keeps_the_session(
    operator: Any, database_target: DatabaseTarget, blocked: Blocked
) -> None:
    operation = actions.do_start_operation(
        operator, PG_CANCEL, str(database_target.pk), {"pid": blocked.waiter_pid}, ""
    )
    run_handler(operation)
    blocked.thread.join(10)
    assert isinstance(blocked.waiter_error, psycopg.errors.QueryCanceled)
    assert _alive(database_target.database, blocked.waiter_pid)
    event = AuditEvent.objects.get(action="datastores.query_cancelled")
    assert event.data["pid"] == blocked.waiter_pid and "/* waiting */" in event.data["query"]


def test_an_operator_may_not_terminate(operator: Any, database_target: DatabaseTarget) -> None:
    with pytest.raises(actions.OperationRefused, match="does not allow"):
        actions.do_start_operation(operator, PG_TERMINATE, str(database_target.pk), {"pid": 1}, "x")


def test_the_confirmation_shows_the_query_of_that_pid(
    admin: Any, database_target: DatabaseTarget, blocked: Blocked
) -> None:
    response = client_for(admin).post(
        reverse("operations:start", args=[PG_TERMINATE]),
        {
            "target": database_target.pk,
            "p-pid": blocked.blocker_pid,
            "reason": "stuck",
            "idempotency_key": "k1",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert f"pid {blocked.blocker_pid}" in page
    assert "UPDATE accounts SET balance = balance + 1 WHERE id = 1" in page
    assert f"SELECT pg_terminate_backend({blocked.blocker_pid});" in page


def test_the_portals_own_connection_is_refused(admin: Any, database_target: DatabaseTarget) -> None:
    with open_session(database_target.database, "opsportal-web") as portal:
        pid = portal.info.backend_pid
        with pytest.raises(actions.InvalidParameters, match="portal's own connection"):
            actions.do_start_operation(
                admin, PG_TERMINATE, str(database_target.pk), {"pid": pid}, "oops"
            )
        assert _alive(database_target.database, pid)
    assert AuditEvent.objects.filter(action="operation.invalid").exists()


def test_a_pid_that_does_not_exist_is_refused_with_a_message(
    admin: Any, database_target: DatabaseTarget
) -> None:
    response = client_for(admin).post(
        reverse("operations:start", args=[PG_TERMINATE]),
        {
            "target": database_target.pk,
            "p-pid": 2_000_000_000,
            "reason": "x",
            "idempotency_key": "k2",
        },
    )
    assert response.status_code == 400
    assert "There is no backend with pid 2000000000" in response.content.decode()


def test_a_backend_that_ended_before_the_worker_got_to_it_fails_clearly(
    admin: Any, database_target: DatabaseTarget
) -> None:
    session = open_session(database_target.database, "short-lived")
    pid = session.info.backend_pid
    operation = actions.do_start_operation(
        admin, PG_TERMINATE, str(database_target.pk), {"pid": pid}, "x"
    )
    session.close()
    wait_for(lambda: not _alive(database_target.database, pid), timeout=10, what="the end")
    with pytest.raises(OperationFailed, match=f"no backend with pid {pid}"):
        run_handler(operation)


def test_vacuum_of_a_table_runs_and_is_audited(
    operator: Any, database_target: DatabaseTarget
) -> None:
    operation = actions.do_start_operation(
        operator, PG_VACUUM, str(database_target.pk), {"table": "billing.invoices"}, ""
    )
    assert operation.params == {"table": "billing.invoices"}
    run_handler(operation)
    operation.refresh_from_db()
    assert "VACUUM (ANALYZE) of billing.invoices done." in operation.status_text
    with psycopg.connect(**server_kwargs(database_target.database)) as check:
        row = check.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = 'billing' AND relname = 'invoices'"
        ).fetchone()
    assert row == (True, True)
    assert AuditEvent.objects.filter(
        action="datastores.vacuumed", operation_id=operation.pk
    ).exists()


def test_vacuum_of_the_whole_database(operator: Any, database_target: DatabaseTarget) -> None:
    operation = actions.do_start_operation(
        operator, PG_VACUUM, str(database_target.pk), {"table": ""}, ""
    )
    run_handler(operation)
    operation.refresh_from_db()
    assert f"the whole database {database_target.database} done" in operation.status_text


@pytest.mark.parametrize(
    "name",
    ['accounts"; DROP TABLE accounts; --', "accounts; DROP TABLE accounts", "'accounts'", "nope"],
)
def test_a_table_name_with_quotes_and_semicolons_is_refused(
    operator: Any, database_target: DatabaseTarget, name: str
) -> None:
    response = client_for(operator).post(
        reverse("operations:start", args=[PG_VACUUM]),
        {"target": database_target.pk, "p-table": name, "reason": "", "idempotency_key": "k3"},
    )
    assert response.status_code == 400
    assert "There is no table" in response.content.decode()
    with psycopg.connect(**server_kwargs(database_target.database)) as check:
        assert check.execute("SELECT count(*) FROM accounts").fetchone() == (500,)
