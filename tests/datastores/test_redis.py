"""The Redis console and operations against the run's real Redis, on a database number of
their own (FLUSHDB before and after each test)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.datastores import redis_client
from apps.datastores.models import RedisTarget
from apps.datastores.operations import (
    REDIS_BGSAVE,
    REDIS_CLEAR_FAILED,
    REDIS_DELETE_KEYS,
    REDIS_FLUSHDB,
)
from apps.operations import actions
from tests.conftest import client_for
from tests.datastores.conftest import REDIS_TEST_DB, run_handler
from tests.support.waiting import wait_for


def seed_queues(client: redis.Redis) -> None:
    client.rpush("bull:emails:wait", *[f"job{i}" for i in range(7)])
    client.rpush("bull:emails:active", "job100", "job101")
    client.zadd("bull:emails:failed", {f"f{i}": i for i in range(3)})
    client.zadd("bull:emails:delayed", {"d1": 1})
    for i in range(3):
        client.hset(f"bull:emails:f{i}", mapping={"data": "{}", "failedReason": "boom"})
    client.rpush("celery", *["{}"] * 4)
    client.set("sessions:count", "12345")


def test_the_console_shows_queue_depths_of_bullmq_and_celery(
    viewer: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    seed_queues(redis_db)
    snapshot = redis_client.read_snapshot(redis_target)
    depths = {(queue.kind, queue.name): dict(queue.depths) for queue in snapshot.queues}
    assert depths[("BullMQ", "emails")] == {"wait": 7, "active": 2, "failed": 3, "delayed": 1}
    assert depths[("BullMQ", "reports")] == {"wait": 0, "active": 0, "failed": 0, "delayed": 0}
    assert depths[("Celery", "celery")] == {"list": 4}
    assert depths[("key", "sessions:count")] == {"string": 5}
    assert snapshot.version and snapshot.ping_ms >= 0
    assert f"db{REDIS_TEST_DB}" in snapshot.keyspace
    response = client_for(viewer).get(reverse("datastores:redis", args=[redis_target.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="depth-emails-wait">wait <strong>7</strong>' in page
    fragment = client_for(viewer).get(
        reverse("datastores:redis", args=[redis_target.pk]), HTTP_HX_REQUEST="true"
    )
    assert fragment.content.decode().lstrip().startswith('<div id="console"')


def test_delete_by_pattern_removes_exactly_the_matching_keys_in_batches(
    admin: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    pipe = redis_db.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"cache:user:{i}", "x")
    for i in range(500):
        pipe.set(f"cache:team:{i}", "x")
        pipe.set(f"keep:user:{i}", "x")
    pipe.execute()
    preview = redis_client.preview_pattern(redis_db, "cache:user:*")
    assert preview.count == 20_000 and preview.complete and len(preview.sample) == 20
    operation = actions.do_start_operation(
        admin, REDIS_DELETE_KEYS, str(redis_target.pk), {"pattern": "cache:user:*"}, "stale"
    )
    run_handler(operation)
    operation.refresh_from_db()
    assert redis_db.dbsize() == 1000
    assert not list(redis_db.scan_iter("cache:user:*"))
    event = AuditEvent.objects.get(action="datastores.keys_deleted")
    assert event.data["deleted"] == 20_000
    assert event.data["pattern"] == "cache:user:*"
    # At least 20 batches of SCAN COUNT 1000 for 21,000 keys: never one big command.
    assert event.data["batches"] >= 20
    assert "Deleted 20000 keys" in operation.status_text


def test_the_confirmation_previews_the_count_and_a_sample(
    admin: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    redis_db.mset({f"tmp:{i}": "x" for i in range(30)})
    response = client_for(admin).post(
        reverse("operations:start", args=[REDIS_DELETE_KEYS]),
        {"target": redis_target.pk, "p-pattern": "tmp:*", "reason": "x", "idempotency_key": "a"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Delete 30 keys matching" in page
    assert "tmp:1" in page
    assert redis_db.dbsize() == 30


def test_the_pattern_star_needs_a_typed_confirmation(
    admin: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    redis_db.set("precious", "1")
    response = client_for(admin).post(
        reverse("operations:start", args=[REDIS_DELETE_KEYS]),
        {"target": redis_target.pk, "p-pattern": "*", "reason": "x", "idempotency_key": "b"},
    )
    assert response.status_code == 400
    assert "matches every key of the database: type it again" in response.content.decode()
    assert redis_db.get("precious") == "1"
    confirmed = client_for(admin).post(
        reverse("operations:start", args=[REDIS_DELETE_KEYS]),
        {
            "target": redis_target.pk,
            "p-pattern": "*",
            "p-confirm_everything": "*",
            "reason": "x",
            "idempotency_key": "c",
        },
    )
    assert confirmed.status_code == 200  # on to the confirmation page


def test_only_admins_delete_keys(
    operator: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    redis_db.set("a1", "1")
    with pytest.raises(actions.OperationRefused, match="does not allow"):
        actions.do_start_operation(
            operator, REDIS_DELETE_KEYS, str(redis_target.pk), {"pattern": "a*"}, "x"
        )
    assert redis_db.get("a1") == "1"


def test_clear_failed_jobs_removes_the_jobs_and_their_ids(
    operator: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    seed_queues(redis_db)
    operation = actions.do_start_operation(
        operator, REDIS_CLEAR_FAILED, str(redis_target.pk), {"queue": "emails"}, ""
    )
    run_handler(operation)
    assert redis_db.zcard("bull:emails:failed") == 0
    assert not redis_db.exists("bull:emails:f0", "bull:emails:f1", "bull:emails:f2")
    assert redis_db.llen("bull:emails:wait") == 7
    assert AuditEvent.objects.get(action="datastores.failed_jobs_cleared").data["removed"] == 3


def test_flushdb_needs_the_database_number_typed(
    admin: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    redis_db.set("a", "1")
    with pytest.raises(actions.InvalidParameters, match="you typed 0"):
        actions.do_start_operation(
            admin, REDIS_FLUSHDB, str(redis_target.pk), {"confirm_db": 0}, "x"
        )
    assert redis_db.get("a") == "1"
    operation = actions.do_start_operation(
        admin, REDIS_FLUSHDB, str(redis_target.pk), {"confirm_db": REDIS_TEST_DB}, "x"
    )
    run_handler(operation)
    assert redis_db.dbsize() == 0


def test_bgsave_waits_for_the_snapshot(operator: Any, redis_target: RedisTarget) -> None:
    operation = actions.do_start_operation(operator, REDIS_BGSAVE, str(redis_target.pk), {}, "")
    run_handler(operation)
    operation.refresh_from_db()
    assert "BGSAVE done" in operation.status_text


def test_a_server_that_is_down_is_a_message(viewer: Any, redis_target: RedisTarget) -> None:
    redis_target.url = "redis://127.0.0.1:1"
    redis_target.save(update_fields=["url"])
    response = client_for(viewer).get(reverse("datastores:redis", args=[redis_target.pk]))
    assert response.status_code == 200
    assert "Unreachable." in response.content.decode()
    assert "does not answer" in response.content.decode()


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server that needs the password "right-password", on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "right-password",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password="right-password")
    wait_for(lambda: _pings(client), timeout=10, what="the throwaway redis-server")
    yield f"redis://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_wrong_password_is_said_so(
    admin: Any, redis_target: RedisTarget, guarded_redis: str
) -> None:
    redis_target.url = guarded_redis
    redis_target.db = 0
    redis_target.set_password("not-the-password")
    redis_target.save(update_fields=["url", "db", "password_encrypted"])
    response = client_for(admin).post(reverse("datastores:redis-check", args=[redis_target.pk]))
    assert response.status_code == 302
    redis_target.refresh_from_db()
    assert redis_target.check_ok is False
    assert redis_target.check_detail.startswith("Wrong password")
    event = AuditEvent.objects.get(action="datastores.redis_connection_tested")
    assert event.outcome == "failed"
    page = client_for(admin).get(reverse("datastores:redis", args=[redis_target.pk]))
    assert page.status_code == 200 and "Wrong password" in page.content.decode()
    redis_target.set_password("")
    redis_target.save(update_fields=["password_encrypted"])
    page = client_for(admin).get(reverse("datastores:redis", args=[redis_target.pk]))
    assert "needs a password and none is stored" in page.content.decode()
    redis_target.set_password("right-password")
    redis_target.save(update_fields=["password_encrypted"])
    client_for(admin).post(reverse("datastores:redis-check", args=[redis_target.pk]))
    redis_target.refresh_from_db()
    assert redis_target.check_ok is True and "PONG" in redis_target.check_detail


def test_the_admin_form_keeps_the_password_encrypted_and_out_of_the_url(admin: Any) -> None:
    client = client_for(admin)
    refused = client.post(
        reverse("datastores:redis-create"),
        {"name": "cache", "url": "redis://:secret@cache:6379", "db": 0},
    )
    assert refused.status_code == 400
    assert "Leave the password out of the URL" in refused.content.decode()
    assert not RedisTarget.objects.exists()
    created = client.post(
        reverse("datastores:redis-create"),
        {
            "name": "cache",
            "url": "rediss://cache:6380",
            "db": 2,
            "password": "s3cret",
            "bullmq_queues": "emails\nreports",
        },
    )
    assert created.status_code == 302
    target = RedisTarget.objects.get()
    assert target.password() == "s3cret" and "s3cret" not in target.password_encrypted
    assert target.uses_tls and target.bullmq_names == ["emails", "reports"]
    event = AuditEvent.objects.get(action="redistarget.created")
    assert "s3cret" not in str(event.data)
    bad = client.post(
        reverse("datastores:redis-create"),
        {"name": "other", "url": "redis://cache:6379", "db": 0, "bullmq_queues": "a*"},
    )
    assert bad.status_code == 400


def test_delete_by_pattern_takes_smaller_batches_when_commands_are_slow() -> None:
    deletion = redis_client.Deletion()
    assert deletion.count == redis_client.SCAN_BATCH
    deletion.took(redis_client.BATCH_BUDGET_MS * 4)
    assert deletion.count == redis_client.SCAN_BATCH // 2
    for _ in range(10):
        deletion.took(50.0)
    assert deletion.count == redis_client.DELETE_BATCH_MIN  # never below the floor
    deletion.took(redis_client.BATCH_BUDGET_MS / 2)  # within the budget: kept
    assert deletion.count == redis_client.DELETE_BATCH_MIN
    for _ in range(10):
        deletion.took(0.1)
    assert deletion.count == redis_client.SCAN_BATCH  # grows back, never above SCAN COUNT 1000
    assert deletion.calls == 22 and deletion.slowest_call_ms == 50.0
    assert deletion.smallest_count == redis_client.DELETE_BATCH_MIN
