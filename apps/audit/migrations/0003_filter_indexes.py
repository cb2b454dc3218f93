"""Indexes for the filters of the audit history (apps/audit/filters.py), so that a filtered page
costs the same at the first and the ten-thousandth page of a table of millions of events.

They are created with SQL rather than declared on the model: the trigram GIN indexes of the
free-text search exist only on PostgreSQL, and the list's indexes are easier to reason about
together, in one place. Adding indexes leaves every row, and so the hash chain, untouched.

Not here, on purpose: the action prefix (LIKE 'operation.%') is served by the pattern-ops
index Django already made for the indexed ``action`` column, and with seq ordering the planner
reads the seq index backwards and filters, which EXPLAIN showed under 1 ms at 1,000,000 events;
a date range uses the ``created_at`` index. Each extra index slows every append.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger(__name__)

TABLE = "audit_auditevent"

# (name, columns) on every database. Each ends with seq: the list is ordered by seq, so an
# equality filter followed by seq reads the newest matching rows in order, at any cursor.
PLAIN = [
    ("audit_event_actor_seq", "actor_label, seq"),
    ("audit_event_outcome_seq", "outcome, seq"),
]
# Django writes icontains as UPPER(col::text) LIKE UPPER(%s): the trigram indexes are on
# that very expression, or the planner could not use them.
TRIGRAM = [
    ("audit_event_label_trgm", "(UPPER(target_label::text)) gin_trgm_ops"),
    ("audit_event_reason_trgm", "(UPPER(reason::text)) gin_trgm_ops"),
]


def _has_trigram(schema_editor: Any) -> bool:
    """Create pg_trgm when it is missing. That needs a superuser (or, since PostgreSQL 13, a
    database owner, the extension being trusted); when it is refused the search still works,
    only by scanning, and the migration must not fail over an optimisation."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone():
            return True
    try:
        # A savepoint: a refused statement would otherwise abort the migration's transaction.
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm", params=None)
    except DatabaseError as error:
        logger.warning(
            "audit: pg_trgm could not be created (%s); the free-text search of the audit "
            "history will scan the table instead of using trigram indexes.",
            error,
        )
        return False
    return True


def create_indexes(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    for name, columns in PLAIN:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({columns})")
    if vendor == "postgresql" and _has_trigram(schema_editor):
        for name, expression in TRIGRAM:
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} USING gin ({expression})"
            )


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    # The extension stays: other tables may use it by then.
    for name, _ in PLAIN + TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
