"""What every benchmark starts from: the bench operator signed in to a test client, and an
operations table with nothing in it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from apps.accounts.roles import OPERATOR

OPERATOR_USERNAME = "bench-operator"


def bench_operator() -> Any:
    """The operator the benchmarks act as. Users stay between runs: audit events point at
    them, and the audit table is append-only."""
    user, _ = get_user_model().objects.get_or_create(
        username=OPERATOR_USERNAME, defaults={"email": f"{OPERATOR_USERNAME}@example.com"}
    )
    # The group comes from the data migration apps/accounts/migrations/0001_roles.py.
    user.groups.add(Group.objects.get(name=OPERATOR))
    return user


def signed_in_client(user: Any) -> Client:
    """An in-process client, signed in. The host is one ALLOWED_HOSTS accepts, so that no
    test-only setting has to change."""
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    return client


def empty_operations_table() -> None:
    """Drop every operation and its log lines. The audit events stay: the audit table
    refuses TRUNCATE and DELETE by design, and it is fine for them to pile up here."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE operations_operation CASCADE")
