"""The SQL that makes the audit table append-only, per database vendor.

Installed by a migration and never removed by the portal: no code path of the application
drops or disables these triggers.
"""

from __future__ import annotations

TABLE = "audit_auditevent"
MESSAGE = "audit events are append-only"

POSTGRESQL = [
    f"""
    CREATE OR REPLACE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    f"""
    CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    f"""
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
]

SQLITE_TRIGGER_NAMES = ["audit_no_update", "audit_no_delete"]
SQLITE = [
    f"""
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END
    """,
    # SQLite has no TRUNCATE: "DELETE FROM t" without WHERE fires this trigger too.
    f"""
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END
    """,
]


def statements_for(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return POSTGRESQL
    if vendor == "sqlite":
        return SQLITE
    raise NotImplementedError(f"No append-only triggers for the {vendor} database.")
