"""Fixtures on real services: the database and broker named by the environment (PostgreSQL and
Redis under `make test`, SQLite and the filesystem broker for the embedded run), a real
Celery worker process, and the personas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.backends.base.operations import BaseDatabaseOperations
from django.test import Client

from apps.accounts.roles import ADMIN, OPERATOR, VIEWER
from apps.audit import triggers
from apps.audit.models import GENESIS_HASH
from tests.factories import make_user
from tests.support.worker import Worker

# The browser fixtures (headless Chromium on the live server), for the browser tests of every
# directory.
pytest_plugins = ["tests.support.browser"]


def _flush_with_audit_triggers_off(original: Any) -> Any:
    """Between transactional tests Django empties every table. The audit table refuses that,
    as it must; the test harness alone steps around its triggers for the flush."""

    def sql_flush(
        self: BaseDatabaseOperations, style: Any, tables: Any, **kwargs: Any
    ) -> list[str]:
        statements = original(self, style, tables, **kwargs)
        if triggers.TABLE not in tables:
            return statements
        # The chain head is a data-migration row, like the roles: put it back.
        head = (
            f"INSERT INTO audit_auditchainhead (id, seq, last_hash) VALUES (1, 0, '{GENESIS_HASH}')"
        )
        if self.connection.vendor == "postgresql":
            return ["SET LOCAL session_replication_role = replica", *statements, head]
        drops = [f"DROP TRIGGER IF EXISTS {name}" for name in triggers.SQLITE_TRIGGER_NAMES]
        return [*drops, *statements, *triggers.SQLITE, head]

    return sql_flush


@pytest.fixture(scope="session", autouse=True)
def _audit_aware_flush() -> Iterator[None]:
    ops_class = type(connection.ops)
    original = ops_class.sql_flush
    ops_class.sql_flush = _flush_with_audit_triggers_off(original)  # type: ignore[method-assign]
    yield
    ops_class.sql_flush = original  # type: ignore[method-assign]


@pytest.fixture
def admin(db: None) -> Any:
    return make_user("alice-admin", ADMIN)


@pytest.fixture
def second_admin(db: None) -> Any:
    return make_user("bob-admin", ADMIN)


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("olga-operator", OPERATOR)


@pytest.fixture
def viewer(db: None) -> Any:
    return make_user("victor-viewer", VIEWER)


@pytest.fixture
def nobody(db: None) -> Any:
    return make_user("nora-norole")


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def start_worker(transactional_db: None) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes; every one still alive is stopped after the test."""
    started: list[Worker] = []

    def start(name: str | None = None) -> Worker:
        worker = Worker(name=name).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker(start_worker: Callable[..., Worker]) -> Worker:
    return start_worker()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """A SIGKILLed worker leaves its session behind for a moment; the test database can
    only be dropped at the end once no one else is connected."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
