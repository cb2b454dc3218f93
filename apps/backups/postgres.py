"""Talking to a target's PostgreSQL server: connecting (psycopg), what the server is, the
row counts of its tables, and which pg_dump to run against it.

Connection details never go on a command line: pg_dump gets them in its environment
(PGHOST, PGDATABASE, PGPASSWORD, …), so no argument is built from anything a person typed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import psycopg
from django.conf import settings
from psycopg import errors, sql

from apps.backups.models import DatabaseTarget

CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "opsportal"
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")


class DatabaseProblem(Exception):
    """The database could not be reached or refused; the message says why for people."""


def describe_connection_error(target: DatabaseTarget, exc: psycopg.Error) -> str:
    where = f"{target.host}:{target.port}"
    if isinstance(exc, errors.InvalidPassword):
        return f"Wrong password for user {target.user} on {where}."
    if isinstance(exc, errors.InvalidAuthorizationSpecification):
        return f"The server at {where} does not let user {target.user} in: {exc}".strip()
    if isinstance(exc, errors.InvalidCatalogName):
        return f"The database {target.database} does not exist on {where}."
    text = str(exc).strip()
    if "password authentication failed" in text:
        return f"Wrong password for user {target.user} on {where}."
    if "does not exist" in text and f'"{target.database}"' in text:
        return f"The database {target.database} does not exist on {where}."
    last = text.splitlines()[-1] if text else type(exc).__name__
    return f"The server at {where} does not answer: {last}"


def connect(target: DatabaseTarget, **options: object) -> psycopg.Connection:
    try:
        return psycopg.connect(
            host=target.host,
            port=target.port,
            dbname=target.database,
            user=target.user,
            password=target.password() or None,
            sslmode=target.ssl_mode,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            **options,  # type: ignore[arg-type]
        )
    except psycopg.Error as exc:
        raise DatabaseProblem(describe_connection_error(target, exc)) from None


@dataclass(frozen=True)
class ServerFacts:
    version: str  # "15.20 (Debian 15.20-0+deb12u1)"
    major: int
    database_bytes: int


def server_facts(connection: psycopg.Connection) -> ServerFacts:
    row = connection.execute(
        "SELECT current_setting('server_version'), pg_database_size(current_database())"
    ).fetchone()
    assert row is not None
    return ServerFacts(
        version=str(row[0]),
        major=connection.info.server_version // 10000,
        database_bytes=int(row[1]),
    )


def check_connection(target: DatabaseTarget) -> ServerFacts:
    """Connect and read the server's version and the database's size; DatabaseProblem
    otherwise."""
    with connect(target, autocommit=True) as connection:
        return server_facts(connection)


_USER_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


def count_rows(connection: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table, ``{"schema.table": rows}``, in the caller's
    transaction (a read-only snapshot with a statement timeout)."""
    counts: dict[str, int] = {}
    tables = connection.execute(_USER_TABLES).fetchall()
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        try:
            row = connection.execute(query).fetchone()
        except errors.QueryCanceled:
            raise DatabaseProblem(
                f"Counting the rows of {schema}.{table} took longer than "
                f"{settings.BACKUP_COUNT_TIMEOUT_SECONDS} s (BACKUP_COUNT_TIMEOUT_SECONDS)."
            ) from None
        except psycopg.Error as exc:
            raise DatabaseProblem(f"Counting the rows of {schema}.{table} failed: {exc}") from None
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def open_snapshot(target: DatabaseTarget) -> tuple[psycopg.Connection, str, dict[str, int]]:
    """A read-only REPEATABLE READ transaction: its exported snapshot (for pg_dump
    --snapshot) and the row counts in that very snapshot, so that the counts recorded are
    exactly what the dump holds. The caller keeps the connection open until pg_dump started,
    then closes it."""
    connection = connect(target)
    try:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        timeout_ms = settings.BACKUP_COUNT_TIMEOUT_SECONDS * 1000
        connection.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
        row = connection.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        counts = count_rows(connection)
    except psycopg.Error as exc:
        connection.close()
        raise DatabaseProblem(f"Reading {target.database} failed: {exc}") from None
    except BaseException:
        connection.close()
        raise
    return connection, snapshot, counts


@dataclass(frozen=True)
class PgClient:
    path: str
    version: str  # "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    major: int
    why: str  # how it was chosen, for the log


def client_version(path: str) -> tuple[str, int]:
    answer = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    found = _VERSION.search(answer)
    if found is None:
        raise DatabaseProblem(f"Cannot read the version of {path}: {answer!r}")
    return answer, int(found.group(1))


def find_client(program: str, server_major: int) -> PgClient:
    """The ``program`` (pg_dump, pg_restore) whose major version is the server's among the
    installed clients (BACKUP_PG_BIN_GLOB, Debian's /usr/lib/postgresql/*/bin), else the one
    on PATH; refused when it is older than the server (pg_dump cannot dump a newer server)."""
    for directory in sorted(glob.glob(settings.BACKUP_PG_BIN_GLOB)):
        path = os.path.join(directory, program)
        if not os.access(path, os.X_OK):
            continue
        version, major = client_version(path)
        if major == server_major:
            return PgClient(
                path, version, major, f"its major version matches the server's ({major})"
            )
    on_path = shutil.which(program)
    if on_path is None:
        raise DatabaseProblem(
            f"No {program} found (for PostgreSQL {server_major}): install the "
            f"postgresql-client-{server_major} package on the workers."
        )
    version, major = client_version(on_path)
    if major < server_major:
        raise DatabaseProblem(
            f"{on_path} is {version}, older than the server (PostgreSQL {server_major}): "
            f"install postgresql-client-{server_major} on the workers."
        )
    return PgClient(
        on_path,
        version,
        major,
        f"no client of version {server_major} under {settings.BACKUP_PG_BIN_GLOB}; "
        "using the one on PATH",
    )


def find_pg_dump(server_major: int) -> PgClient:
    return find_client("pg_dump", server_major)


def client_environment(target: DatabaseTarget) -> dict[str, str]:
    """The environment of pg_dump: the worker's, without any PG* variable of its own, plus the
    target's connection (the password here, never on the command line)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    environment.update(
        {
            "PGHOST": target.host,
            "PGPORT": str(target.port),
            "PGDATABASE": target.database,
            "PGUSER": target.user,
            "PGSSLMODE": target.ssl_mode,
            "PGAPPNAME": APPLICATION_NAME,
            "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        }
    )
    if password := target.password():
        environment["PGPASSWORD"] = password
    return environment
