"""A connection of its own to the database the tests run on (PostgreSQL), beside Django's:
another worker or another transaction, for the tests of locks."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def another_connection(**options: Any) -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"],
        host=db["HOST"],
        port=db["PORT"],
        **options,
    )
