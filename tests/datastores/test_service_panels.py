"""The service page's datastore panels: the page lists the service's PostgreSQL and Redis
targets in a fixed number of queries, and each panel, loaded with htmx, shows its headline
figures (against the run's real PostgreSQL and Redis) or says why it cannot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.backups.models import DatabaseTarget
from apps.datastores import postgres, redis_client
from apps.datastores.models import RedisTarget
from apps.services.models import Service
from tests.conftest import client_for
from tests.datastores.conftest import Blocked, open_session


def make_service() -> Service:
    return Service.objects.create(name="Orders", slug="orders", team="payments")


def link(service: Service, *targets: DatabaseTarget | RedisTarget) -> None:
    for target in targets:
        target.service = service
        target.save(update_fields=["service"])


def test_the_service_page_shows_a_panel_for_each_of_its_datastores(
    viewer: Any, database_target: DatabaseTarget, redis_target: RedisTarget
) -> None:
    service = make_service()
    link(service, database_target, redis_target)
    page = client_for(viewer).get(reverse("services:detail", args=[service.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="datastore-panels"' in html
    postgres_panel = reverse("datastores:postgres-panel", args=[database_target.pk])
    redis_panel = reverse("datastores:redis-panel", args=[redis_target.pk])
    # Loaded by htmx, with a link beside it for a browser without JavaScript.
    assert f'hx-get="{postgres_panel}"' in html and f'href="{postgres_panel}"' in html
    assert f'hx-get="{redis_panel}"' in html and f'href="{redis_panel}"' in html
    assert reverse("datastores:postgres", args=[database_target.pk]) in html


def test_a_service_without_datastores_has_no_panel(viewer: Any, db: None) -> None:
    service = make_service()
    page = client_for(viewer).get(reverse("services:detail", args=[service.slug]))
    assert page.status_code == 200
    assert 'data-testid="datastore-panels"' not in page.content.decode()


def _page_queries(user: Any, service: Service) -> int:
    client = client_for(user)
    client.get(reverse("services:detail", args=[service.slug]))  # sessions, permissions
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("services:detail", args=[service.slug])).status_code == 200
    return len(captured)


def test_the_service_page_makes_as_many_queries_for_six_datastores_as_for_two(
    viewer: Any, database_target: DatabaseTarget, redis_target: RedisTarget
) -> None:
    service = make_service()
    link(service, database_target, redis_target)
    two = _page_queries(viewer, service)
    for number in range(2):
        extra = DatabaseTarget(
            name=f"orders-{number}",
            host="127.0.0.1",
            port=1,
            database="orders",
            user="postgres",
            storage=database_target.storage,
            service=service,
        )
        extra.save()
        RedisTarget.objects.create(
            name=f"cache-{number}", url="redis://127.0.0.1:1", service=service
        )
    six = _page_queries(viewer, service)
    assert six == two
    html = client_for(viewer).get(reverse("services:detail", args=[service.slug])).content
    assert html.count(b'data-testid="postgres-panel-') == 3
    assert html.count(b'data-testid="redis-panel-') == 3


def test_the_postgres_panel_shows_connections_the_longest_query_and_who_waits(
    viewer: Any, database_target: DatabaseTarget, blocked: Blocked
) -> None:
    response = client_for(viewer).get(
        reverse("datastores:postgres-panel", args=[database_target.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # a fragment, for the panel's hx-get
    snapshot = postgres.read_headline(database_target)
    assert snapshot.max_connections > 0 and snapshot.connections >= 2
    connections = html.split('data-testid="panel-connections">')[1].split("</dd>")[0]
    assert f"of {snapshot.max_connections} (" in connections
    # The blocker's transaction started first: it is the longest, and its query is shown.
    assert snapshot.longest is not None and snapshot.longest["pid"] == blocked.blocker_pid
    assert "UPDATE accounts SET balance = balance + 1" in html
    assert f"pid {blocked.blocker_pid}" in html
    assert snapshot.blocked_count == 1
    assert "<strong>1</strong> blocked" in html


def test_the_postgres_panel_is_about_its_own_database(database_target: DatabaseTarget) -> None:
    # A transaction left open in another database of the same server is older than anything
    # in this one: the console lists it, the service's panel does not.
    elsewhere = open_session("postgres", "elsewhere")
    try:
        elsewhere.execute("SELECT 1")  # idle in transaction from now on
        pid = elsewhere.info.backend_pid
        assert pid in {row["pid"] for row in postgres.read_snapshot(database_target).activity}
        headline = postgres.read_headline(database_target)
        assert headline.longest is None or headline.longest["pid"] != pid
    finally:
        elsewhere.close()


def test_the_postgres_panel_colours_its_figures_by_the_runbooks_thresholds() -> None:
    longest = {
        "pid": 4242,
        "state": "active",
        "application_name": "billing",
        "query": "SELECT pg_sleep(600)",
        "duration": timedelta(minutes=6),
        "is_long": True,
    }
    critical = postgres.Snapshot(max_connections=100, connections=96, activity=[longest])
    html = render_to_string(
        "datastores/_postgres_panel.html", {"snapshot": critical, "target": None}
    )
    connections = html.split('data-testid="panel-connections">')[1].split("</dd>")[0]
    assert "Critical" in connections and "<strong>96</strong> of 100" in connections
    longest_html = html.split('data-testid="panel-longest">')[1].split("</dd>")[0]
    assert "Warning" in longest_html and "6 min 0 s" in longest_html
    calm = postgres.Snapshot(max_connections=100, connections=10)
    html = render_to_string("datastores/_postgres_panel.html", {"snapshot": calm, "target": None})
    assert "OK" in html and "Warning" not in html and "none running" in html


def test_the_redis_panel_shows_memory_and_queue_depths(
    viewer: Any, redis_target: RedisTarget, redis_db: redis.Redis
) -> None:
    redis_target.bullmq_queues = "emails\nbig"
    redis_target.save(update_fields=["bullmq_queues"])
    redis_db.rpush("bull:emails:wait", *[f"job{i}" for i in range(7)])
    redis_db.zadd("bull:emails:failed", {"f1": 1})
    redis_db.rpush("bull:big:wait", *range(redis_client.QUEUE_WARNING_DEPTH + 1))
    redis_db.rpush("celery", "{}", "{}")
    response = client_for(viewer).get(
        reverse("datastores:redis-panel", args=[redis_target.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    emails = html.split('data-testid="panel-queue-emails">')[1].split("</div>")[0]
    assert "wait <strong>7</strong>" in emails and "failed <strong>1</strong>" in emails
    assert "OK" in emails
    big = html.split('data-testid="panel-queue-big">')[1].split("</div>")[0]
    assert f"wait <strong>{redis_client.QUEUE_WARNING_DEPTH + 1}</strong>" in big
    assert "Warning" in big
    celery = html.split('data-testid="panel-queue-celery">')[1].split("</div>")[0]
    assert "list <strong>2</strong>" in celery
    assert 'data-testid="panel-memory"' in html


def test_the_redis_panel_colours_memory_by_the_thresholds() -> None:
    full = redis_client.RedisSnapshot(used_memory=96, maxmemory=100)
    html = render_to_string("datastores/_redis_panel.html", {"snapshot": full})
    memory = html.split('data-testid="panel-memory">')[1].split("</dd>")[0]
    assert "Critical" in memory and "96" in memory
    half = redis_client.RedisSnapshot(used_memory=50, maxmemory=100)
    html = render_to_string("datastores/_redis_panel.html", {"snapshot": half})
    assert "OK" in html.split('data-testid="panel-memory">')[1].split("</dd>")[0]


def test_datastores_that_are_down_say_so_in_their_panels_and_the_page_still_renders(
    viewer: Any, database_target: DatabaseTarget, redis_target: RedisTarget
) -> None:
    database_target.port = 1  # nothing listens there
    database_target.save(update_fields=["port"])
    redis_target.url = "redis://127.0.0.1:1"
    redis_target.save(update_fields=["url"])
    service = make_service()
    link(service, database_target, redis_target)
    client = client_for(viewer)
    page = client.get(reverse("services:detail", args=[service.slug]))
    assert page.status_code == 200 and 'data-testid="datastore-panels"' in page.content.decode()
    pg_panel = client.get(reverse("datastores:postgres-panel", args=[database_target.pk]))
    assert pg_panel.status_code == 200
    assert "Unreachable." in pg_panel.content.decode()
    assert "does not answer" in pg_panel.content.decode()
    redis_panel = client.get(reverse("datastores:redis-panel", args=[redis_target.pk]))
    assert redis_panel.status_code == 200
    assert "Unreachable." in redis_panel.content.decode()
    assert "does not answer" in redis_panel.content.decode()


def test_the_panels_are_read_only_and_need_the_permission(
    viewer: Any, nobody: Any, database_target: DatabaseTarget, redis_target: RedisTarget
) -> None:
    for name, pk in (("postgres-panel", database_target.pk), ("redis-panel", redis_target.pk)):
        url = reverse(f"datastores:{name}", args=[pk])
        assert client_for(viewer).post(url).status_code == 405
        assert client_for(nobody).get(url).status_code == 403
    missing = reverse("datastores:redis-panel", args=[999999])
    assert client_for(viewer).get(missing).status_code == 404
