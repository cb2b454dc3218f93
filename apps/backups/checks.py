"""Integrity checks: what a restored database must hold.

Two kinds, run after every restore and test restore, each in a read-only transaction with a
statement timeout: the row count of every table compared with the count recorded in the
backup's own snapshot, and the admins' checks (one SELECT returning one number, with an
expected range). An admin's SQL is checked twice when saved: by reading it (one SELECT or
WITH … SELECT, no ';') and by running it on the target in a read-only transaction, wrapped as
a subquery, so that PostgreSQL itself refuses anything that writes or is not a single query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import pluralize
from psycopg import errors, sql

from apps.backups import postgres
from apps.backups.dumps import Progress
from apps.backups.models import Backup, DatabaseTarget, IntegrityCheck
from apps.operations.choices import LogLevel

_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)+", re.DOTALL)
_FIRST_WORD = re.compile(r"^(SELECT|WITH)\b", re.IGNORECASE)

ONE_SELECT = (
    "Write one read-only SELECT (or WITH … SELECT) returning one number; INSERT, UPDATE, "
    "DELETE, DDL (CREATE, DROP, ALTER, …) and several statements are refused."
)
WRITES = (
    "PostgreSQL refused it in a read-only transaction: it writes (INSERT, UPDATE, DELETE, "
    "DDL, nextval(), …). " + ONE_SELECT
)


class CheckProblem(Exception):
    """An integrity check could not give its number; the message says why for people."""


def clean_check_sql(text: str) -> str:
    """The SQL without surrounding blanks and a final ';', or ValidationError when it is not
    one SELECT (read for a clear message; the trial run is the real guard)."""
    query = text.strip().rstrip(";").rstrip()
    body = _LEADING_COMMENTS.sub("", query)
    if not body:
        raise ValidationError("Write the query.")
    if ";" in query:
        raise ValidationError(f"Only one statement: remove the ';' inside it. {ONE_SELECT}")
    if not _FIRST_WORD.match(body):
        word = body.split(None, 1)[0].upper()[:20]
        raise ValidationError(f"{word} is refused. {ONE_SELECT}")
    return query


def _wrapped(query: str) -> sql.Composed:
    # As a subquery, a statement that is not a single SELECT is a syntax error, and a
    # data-modifying WITH is refused ("must be at the top level"); the line breaks keep a
    # trailing "--" comment from swallowing the closing parenthesis.
    return sql.SQL("SELECT * FROM (\n{}\n) AS integrity_check").format(sql.SQL(query))  # type: ignore[arg-type]


def _describe(exc: psycopg.Error) -> str:
    text = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
    if isinstance(exc, errors.ReadOnlySqlTransaction) or "data-modifying" in text:
        return WRITES
    if isinstance(exc, errors.QueryCanceled):
        return (
            f"It took longer than {settings.BACKUP_CHECK_TIMEOUT_SECONDS} s "
            "(BACKUP_CHECK_TIMEOUT_SECONDS) and was stopped."
        )
    if isinstance(exc, errors.SyntaxError):
        return f"PostgreSQL does not accept it as a single SELECT: {text}. {ONE_SELECT}"
    return f"It failed: {text}"


def run_check_query(connection: psycopg.Connection, query: str) -> Decimal:
    """The number ``query`` returns, run in its own read-only transaction (always rolled
    back) with the checks' statement timeout; CheckProblem otherwise."""
    timeout_ms = settings.BACKUP_CHECK_TIMEOUT_SECONDS * 1000
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET TRANSACTION READ ONLY")
            connection.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
            cursor = connection.execute(_wrapped(query))
            rows = cursor.fetchmany(2)
            columns = len(cursor.description or ())
    except psycopg.Error as exc:
        raise CheckProblem(_describe(exc)) from None
    if len(rows) != 1 or columns != 1:
        shape = "no row" if not rows else "one row" if len(rows) == 1 else "several rows"
        raise CheckProblem(
            f"It returned {shape} of {columns} column{pluralize(columns)}: a check returns "
            "one row with one number."
        )
    value = rows[0][0]
    if value is None:
        raise CheckProblem("It returned NULL, not a number.")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise CheckProblem(f"It returned {str(value)[:50]!r}, not a number.")
    number = Decimal(str(value))
    if not number.is_finite():
        raise CheckProblem(f"It returned {number}, not a number.")
    return number


def try_check_sql(target: DatabaseTarget, query: str) -> Decimal:
    """Run an admin's query once on the target (read-only, rolled back): its number, or
    ValidationError saying why it is refused."""
    try:
        with postgres.connect(target, autocommit=True) as connection:
            return run_check_query(connection, query)
    except postgres.DatabaseProblem as exc:
        raise ValidationError(
            f"It could not be tried on {target.database}: {exc} A check is saved only once it ran."
        ) from None
    except CheckProblem as exc:
        raise ValidationError(str(exc)) from None


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str  # "rows" (a table's row count) or "sql" (an admin's check)
    value: str  # the number found, or "" when there is none
    expected: str
    passed: bool
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line(self) -> str:
        mark = "✔" if self.passed else "✘"
        what = f"rows of {self.name}" if self.kind == "rows" else f"check “{self.name}”"
        found = self.value if self.value else "no number"
        text = f"{mark} {what}: {found}, expected {self.expected}"
        return f"{text}: {self.detail}" if self.detail else text


def compare_row_counts(found: dict[str, int], recorded: dict[str, int]) -> list[CheckResult]:
    """Every table the backup counted must hold exactly that many rows after the restore."""
    results = []
    for table, expected in sorted(recorded.items()):
        rows = found.get(table)
        results.append(
            CheckResult(
                name=table,
                kind="rows",
                value="" if rows is None else str(rows),
                expected=f"{expected} (at backup time)",
                passed=rows == int(expected),
                detail="the table is missing after the restore" if rows is None else "",
            )
        )
    return results


def run_admin_checks(
    connection: psycopg.Connection, checks: Iterable[IntegrityCheck]
) -> list[CheckResult]:
    results = []
    for check in checks:
        try:
            value = run_check_query(connection, check.sql)
        except CheckProblem as exc:
            results.append(
                CheckResult(check.name, "sql", "", check.expected_label, False, str(exc))
            )
            continue
        shown = format(value.normalize(), "f") if value == value.to_integral() else str(value)
        results.append(
            CheckResult(check.name, "sql", shown, check.expected_label, check.accepts(value))
        )
    return results


def run_integrity_checks(
    restored: DatabaseTarget, backup: Backup, reporter: Progress
) -> list[CheckResult]:
    """Connect to the restored database and run both kinds of check; each result goes to the
    log as it comes. The admins' checks are those of the backup's own target: they describe
    its data, wherever it was restored."""
    checks = list(IntegrityCheck.objects.filter(target_id=backup.target_id))
    reporter.step(
        0,
        f"Integrity checks on {restored.database}: {len(backup.row_counts)} row "
        f"count{pluralize(len(backup.row_counts))} and {len(checks)} "
        f"check{pluralize(len(checks))}",
    )
    with postgres.connect(restored, autocommit=True) as connection:
        try:
            with connection.transaction(force_rollback=True):
                connection.execute("SET TRANSACTION READ ONLY")
                timeout_ms = settings.BACKUP_COUNT_TIMEOUT_SECONDS * 1000
                connection.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
                found = postgres.count_rows(connection)
        except psycopg.Error as exc:
            raise postgres.DatabaseProblem(f"Counting the restored rows failed: {exc}") from None
        results = compare_row_counts(found, backup.row_counts)
        extra = sorted(set(found) - set(backup.row_counts))
        if extra:
            reporter.log(
                f"Not in the backup, left as they were: {', '.join(extra[:20])}"
                + (" …" if len(extra) > 20 else ""),
                LogLevel.WARNING,
            )
        reporter.step(50, f"Row counts compared: {sum(r.passed for r in results)} agree")
        results += run_admin_checks(connection, checks)
    for result in results:
        reporter.log(result.line, LogLevel.INFO if result.passed else LogLevel.ERROR)
    return results
