"""The benchmarks' own database, beside the one the tests and the demo use.

``python -m bench.database URL`` creates ``opsportal_bench`` on the server of ``URL`` when it
is missing and prints its URL, for ``scripts/bench.sh`` to export as ``DATABASE_URL``. It runs
before Django is configured, so it talks to the server with psycopg directly.
"""

from __future__ import annotations

import sys
import urllib.parse

import psycopg
from psycopg import sql

BENCH_DATABASE = "opsportal_bench"


def with_database(url: str, name: str) -> str:
    """``url`` with its database (the path) replaced by ``name``; query strings are kept."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(path="/" + urllib.parse.quote(name)).geturl()


def libpq_url(url: str) -> str:
    """dj-database-url accepts postgis:// and friends; libpq only postgres(ql)://."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(scheme="postgresql").geturl()


def ensure_database(url: str, name: str = BENCH_DATABASE) -> str:
    """Create database ``name`` on the server behind ``url`` unless it exists; its URL."""
    maintenance = libpq_url(with_database(url, "postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"bench: created database {name}", file=sys.stderr)
    return with_database(url, name)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith(("postgres://", "postgresql://")):
        print("usage: python -m bench.database postgres://…/any_database", file=sys.stderr)
        return 2
    print(ensure_database(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
