"""The datastores tests' world: a throwaway database on the run's real PostgreSQL server
(registered as a backups DatabaseTarget), a dedicated database number of the run's real
Redis (never 0, which the portal may use, nor the Celery broker's), emptied around each test,
and helpers to hold locks from other sessions."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection as django_connection
from django.utils import timezone
from psycopg import sql

from apps.backups.choices import StorageKind
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.datastores.models import RedisTarget
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.operations.progress import Reporter
from apps.operations.registry import get_kind
from tests.support.waiting import wait_for

SCHEMA_SQL = """
CREATE TABLE accounts (id integer PRIMARY KEY, owner text NOT NULL, balance integer NOT NULL);
CREATE INDEX accounts_owner_unused ON accounts (owner);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (number text PRIMARY KEY, amount numeric);
INSERT INTO accounts SELECT g, 'owner ' || g, g FROM generate_series(1, 500) AS g;
ANALYZE;
"""
# A database number of its own: tests FLUSHDB it. Not 0 (the default of REDIS_URL) and not
# the broker's (CELERY_BROKER_URL, 15 under scripts/test_env.sh).
REDIS_TEST_DB = 11


def server_kwargs(database: str = "postgres") -> dict[str, Any]:
    db = django_connection.settings_dict
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
        "dbname": database,
        "connect_timeout": 5,
    }


@pytest.fixture(scope="module")
def pg_database(django_db_blocker: Any) -> Iterator[str]:
    name = f"opsportal_ds_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**server_kwargs(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(**server_kwargs(name), autocommit=True) as owner:
        owner.execute(SCHEMA_SQL.encode())
    yield name
    with psycopg.connect(**server_kwargs(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def open_session(database: str, application_name: str = "test-session") -> psycopg.Connection:
    return psycopg.connect(**server_kwargs(database), application_name=application_name)


@pytest.fixture
def database_target(db: None, pg_database: str) -> DatabaseTarget:
    kwargs = server_kwargs(pg_database)
    storage = BackupStorage.objects.create(
        name="local", kind=StorageKind.LOCAL, directory=str(settings.BASE_DIR / "var")
    )
    target = DatabaseTarget(
        name="orders",
        host=kwargs["host"],
        port=kwargs["port"],
        database=pg_database,
        user=kwargs["user"],
        storage=storage,
    )
    target.set_password(kwargs["password"] or "")
    target.save()
    return target


class Blocked:
    """A session holding a row lock in an open transaction, and a second one blocked on it."""

    def __init__(self, database: str) -> None:
        self.blocker = open_session(database, "test-blocker")
        self.blocker.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        self.blocker_pid = self.blocker.info.backend_pid
        self.waiter = open_session(database, "test-waiter")
        self.waiter_pid = self.waiter.info.backend_pid
        self.waiter_error: BaseException | None = None
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()
        with psycopg.connect(**server_kwargs(database), autocommit=True) as watcher:
            wait_for(
                lambda: watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                    (self.waiter_pid,),
                ).fetchone(),
                timeout=10,
                what="the second session to wait for the lock",
            )

    def _wait(self) -> None:
        try:
            self.waiter.execute("UPDATE accounts SET balance = 0 WHERE id = 1 /* waiting */")
            self.waiter.commit()
        except BaseException as exc:
            self.waiter_error = exc

    def close(self) -> None:
        for session in (self.blocker, self.waiter):
            with contextlib.suppress(psycopg.Error):
                session.cancel()
        self.thread.join(10)
        for session in (self.blocker, self.waiter):
            session.close()


@pytest.fixture
def blocked(pg_database: str) -> Iterator[Blocked]:
    chain = Blocked(pg_database)
    yield chain
    chain.close()


def redis_url(db: int) -> str:
    parts = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{db}"


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(REDIS_TEST_DB), decode_responses=True)
    client.flushdb(asynchronous=True)
    yield client
    client.flushdb(asynchronous=True)
    client.close()


@pytest.fixture
def redis_target(db: None, redis_db: redis.Redis) -> RedisTarget:
    base = redis_url(REDIS_TEST_DB).rsplit("/", 1)[0]
    return RedisTarget.objects.create(
        name="queues",
        url=base,
        db=REDIS_TEST_DB,
        bullmq_queues="emails\nreports",
        celery_queues="celery",
        extra_keys="sessions:count",
    )


def run_handler(operation: Operation) -> None:
    """The kind's handler in this process, as a worker would call it after claiming."""
    Operation.objects.filter(pk=operation.pk).update(state=State.RUNNING, started_at=timezone.now())
    operation.refresh_from_db()
    get_kind(operation.kind).handler(operation, Reporter(operation))
