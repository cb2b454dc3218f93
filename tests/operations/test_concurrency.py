"""Fifty simultaneous requests to start the same operation on the same target."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection

from apps.operations.models import Operation
from tests.conftest import client_for

# Real concurrency needs a server database: PostgreSQL. (SQLite serialises writers anyway.)
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs concurrent writers"),
]

REQUESTS = 50


def test_fifty_concurrent_starts_create_exactly_one_operation(operator: Any) -> None:
    barrier = threading.Barrier(REQUESTS)
    responses: list[Any] = []
    lock = threading.Lock()

    def post() -> None:
        client = client_for(operator)
        data = {
            "target": "self",
            "p-pause_seconds": "0",
            "reason": "race",
            "idempotency_key": uuid.uuid4().hex,  # fifty different people clicking
            "confirmed": "1",
        }
        try:
            barrier.wait()
            response = client.post("/operations/start/diagnostics.ping/", data)
            with lock:
                responses.append(response)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(responses) == REQUESTS
    operation = Operation.objects.get()  # exactly one
    created = [r for r in responses if r.status_code == 302]
    refused = [r for r in responses if r.status_code == 409]
    assert len(created) == 1
    assert len(refused) == REQUESTS - 1
    for response in refused:
        assert f"Operation #{operation.pk}" in response.content.decode()
