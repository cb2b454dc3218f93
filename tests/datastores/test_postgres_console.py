"""The PostgreSQL console against the run's real server: what it shows, that it cannot
write and stops at its timeout, and that a server that is down is a message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.urls import reverse

from apps.backups.models import DatabaseTarget
from apps.backups.postgres import DatabaseProblem
from apps.datastores import postgres
from tests.conftest import client_for
from tests.datastores.conftest import Blocked


def test_it_lists_the_blocked_query_and_who_blocks_it(
    admin: Any, database_target: DatabaseTarget, blocked: Blocked, monkeypatch: Any
) -> None:
    # The blocked query has waited for milliseconds, not 5 minutes: the threshold is lowered
    # so that the highlighting is what is tested, not the clock.
    monkeypatch.setattr(postgres, "LONG_QUERY", timedelta(0))
    response = client_for(admin).get(reverse("datastores:postgres", args=[database_target.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "UPDATE accounts SET balance = 0 WHERE id = 1 /* waiting */" in page
    snapshot = postgres.read_snapshot(database_target)
    chain = [(row["blocked_pid"], row["blocker_pid"]) for row in snapshot.blocking]
    assert (blocked.waiter_pid, blocked.blocker_pid) in chain
    blocker_row = next(r for r in snapshot.blocking if r["blocker_pid"] == blocked.blocker_pid)
    assert blocker_row["blocker_state"] == "idle in transaction"
    assert "UPDATE accounts SET balance = balance + 1" in blocker_row["blocker_query"]
    waiting = next(row for row in snapshot.activity if row["pid"] == blocked.waiter_pid)
    assert waiting["wait_event_type"] == "Lock"
    assert waiting["blocked_by"] == [blocked.blocker_pid]
    assert waiting["is_long"]
    assert 'class="table-warning"' in page
    # The terminate button of the blocker leads to the engine's form for that pid.
    assert f"p-pid={blocked.blocker_pid}" in page


def test_it_shows_versions_connections_sizes_and_the_missing_extension(
    viewer: Any, database_target: DatabaseTarget
) -> None:
    snapshot = postgres.read_snapshot(database_target)
    assert snapshot.version.split()[0][0].isdigit()
    assert 0 < snapshot.connections <= snapshot.max_connections
    assert snapshot.connections_state == "ok"
    assert [row["name"] for row in snapshot.tables][:1] == ["accounts"]
    assert "accounts_owner_unused" in [row["name"] for row in snapshot.unused_indexes]
    # A primary key enforces a constraint: never listed as unused.
    assert "accounts_pkey" not in [row["name"] for row in snapshot.unused_indexes]
    assert "pg_stat_statements is not installed" in snapshot.statements_note
    assert snapshot.replicas == []
    response = client_for(viewer).get(
        reverse("datastores:postgres", args=[database_target.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="console"')
    assert "<html" not in fragment
    assert 'hx-trigger="every 5s"' in fragment


def test_the_connection_thresholds() -> None:
    assert postgres.Snapshot(max_connections=100, connections=79).connections_state == "ok"
    assert postgres.Snapshot(max_connections=100, connections=80).connections_state == "warning"
    assert postgres.Snapshot(max_connections=100, connections=95).connections_state == "critical"


def test_its_connection_cannot_write(database_target: DatabaseTarget) -> None:
    with postgres.connect(database_target) as connection:
        postgres.begin_read_only(connection, postgres.STATEMENT_TIMEOUT_MS)
        assert connection.execute("SHOW application_name").fetchone() == {
            "application_name": "opsportal-console"
        }
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("UPDATE accounts SET balance = -1 WHERE id = 2")


def test_its_queries_stop_at_their_timeout(database_target: DatabaseTarget) -> None:
    with postgres.connect(database_target) as connection:
        postgres.begin_read_only(connection, 50)
        with pytest.raises(psycopg.errors.QueryCanceled):
            connection.execute("SELECT pg_sleep(5)")


def test_a_slow_server_is_a_message_not_a_500(
    viewer: Any, database_target: DatabaseTarget, blocked: Blocked, monkeypatch: Any
) -> None:
    # A catalog read that waits on a lock past the timeout: an ACCESS EXCLUSIVE lock on a
    # table blocks pg_total_relation_size of it.
    blocked.blocker.execute("LOCK TABLE billing.invoices IN ACCESS EXCLUSIVE MODE")
    with pytest.raises(DatabaseProblem, match="timeout"):
        postgres.read_snapshot(database_target, timeout_ms=200)


def test_a_server_that_is_down_is_a_message(viewer: Any, database_target: DatabaseTarget) -> None:
    database_target.port = 1  # nothing listens there
    database_target.save(update_fields=["port"])
    response = client_for(viewer).get(reverse("datastores:postgres", args=[database_target.pk]))
    assert response.status_code == 200
    assert "Unreachable." in response.content.decode()
    assert "does not answer" in response.content.decode()


def test_a_wrong_password_is_said_so(viewer: Any, database_target: DatabaseTarget) -> None:
    database_target.user = "opsportal_no_such_user"
    database_target.set_password("wrong")
    database_target.save(update_fields=["user", "password_encrypted"])
    response = client_for(viewer).get(reverse("datastores:postgres", args=[database_target.pk]))
    assert response.status_code == 200
    assert "Unreachable." in response.content.decode()


def test_nobody_without_the_permission_sees_it(
    nobody: Any, database_target: DatabaseTarget
) -> None:
    response = client_for(nobody).get(reverse("datastores:postgres", args=[database_target.pk]))
    assert response.status_code == 403
