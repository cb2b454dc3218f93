"""POST /api/alertmanager/ with Alertmanager's version 4 payloads through the Django test
client on PostgreSQL: the replay, the resolution, service mapping, every malformed case and
the bearer token. Every refusal is JSON, audited, and saves nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.test import Client, override_settings

from apps.audit.models import AuditEvent
from apps.incidents.models import Incident
from apps.metrics.models import Alert, AlertStatus
from tests.metrics.test_alerts import World, make_world, switch_on

TOKEN = "am-token-1f0c9d"
URL = "/api/alertmanager/"

pytestmark = pytest.mark.usefixtures("receiver_token")


@pytest.fixture
def receiver_token() -> Any:
    with override_settings(ALERTMANAGER_TOKEN=TOKEN):
        yield


@pytest.fixture
def world(db: None) -> World:
    return make_world()


def am_alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "HighErrorRate",
            "severity": "critical",
            "job": "api",
            "namespace": "shop",
            **labels,
        },
        "annotations": {"summary": "Error rate above 5 % for 5 minutes"},
        "startsAt": "2026-11-30T21:52:26.739266876Z",
        "endsAt": "2026-11-30T22:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=x",
        "fingerprint": "c6eadffa33fcdf37",
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "opsportal",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts) or [am_alert()],
    }


def post(body: Any, *, token: str | None = TOKEN, content_type: str = "application/json") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return Client().post(URL, data=data, content_type=content_type, headers=headers)


def test_it_creates_a_firing_alert_mapped_to_the_target(world: World) -> None:
    response = post(payload())
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "fired": 1,
        "resolved": 0,
        "unmatched": 0,
        "already_resolved": 0,
    }
    alert = Alert.objects.get()
    assert (alert.source, alert.fingerprint, alert.name) == (
        "alertmanager",
        "c6eadffa33fcdf37",
        "HighErrorRate",
    )
    assert (alert.service, alert.target) == (world.service, world.production)
    assert alert.severity == "critical"
    assert alert.summary == "Error rate above 5 % for 5 minutes"
    received = AuditEvent.objects.get(action="alertmanager.received")
    assert received.data["fired"] == 1
    assert received.actor_label == "alertmanager"


def test_a_payload_replayed_twice_creates_one_alert_and_its_resolution_resolves_it(
    world: World,
) -> None:
    assert post(payload()).status_code == 200
    assert post(payload()).status_code == 200
    alert = Alert.objects.get()
    assert alert.status == AlertStatus.FIRING
    assert alert.times_seen == 2
    resolved = post(payload(am_alert("resolved"), status="resolved"))
    assert resolved.status_code == 200
    assert resolved.json()["resolved"] == 1
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.ended_at is not None and alert.ended_at.isoformat() == "2026-11-30T22:30:00+00:00"
    # The resolved payload replayed, and a late replay of the firing one: still one alert.
    assert post(payload(am_alert("resolved"), status="resolved")).json()["already_resolved"] == 1
    assert post(payload()).status_code == 200
    assert Alert.objects.count() == 1
    assert Alert.objects.get().status == AlertStatus.RESOLVED


def test_a_replayed_critical_alert_opens_one_incident_and_its_resolution_notes_it(
    world: World,
) -> None:
    switch_on(world.service)
    post(payload())
    post(payload())
    incident = Incident.objects.get()
    post(payload(am_alert("resolved"), status="resolved"))
    post(payload(am_alert("resolved"), status="resolved"))
    phases = sorted(incident.entries.filter(kind="alert").values_list("data__phase", flat=True))
    assert phases == ["opened", "resolved"]


@pytest.mark.parametrize(
    ("labels", "matched"),
    [
        ({"service": "shop-api", "job": "other", "namespace": "elsewhere"}, "service"),
        ({"service": "Shop-API", "job": "other", "namespace": "elsewhere"}, "service"),
        ({"job": "api", "namespace": "shop-staging"}, "staging"),
        ({"job": "api", "namespace": "shop", "environment": "production"}, "production"),
        ({"job": "unknown", "namespace": "shop"}, None),
    ],
)
def test_it_maps_labels_to_a_service(
    world: World, labels: dict[str, str], matched: str | None
) -> None:
    item = am_alert()
    item["labels"] = {"alertname": "X", **labels}
    response = post(payload(item))
    assert response.status_code == 200
    alert = Alert.objects.get()
    if matched is None:
        assert alert.service is None and alert.target is None
        assert response.json()["unmatched"] == 1
    else:
        assert alert.service == world.service
        expected = {"staging": world.staging, "production": world.production}.get(matched)
        if expected is not None:
            assert alert.target == expected


def test_an_unmatched_alert_is_kept_and_never_opens_an_incident(world: World) -> None:
    switch_on(world.service)
    response = post(payload(am_alert(job="billing", namespace="nowhere")))
    assert response.status_code == 200
    assert Alert.objects.get().service is None
    assert not Incident.objects.exists()


# --- Refusals: 4xx JSON, audited, nothing saved ----------------------------------------------


def _without(field: str) -> dict[str, Any]:
    body = payload()
    del body["alerts"][0][field]
    return body


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = payload()
    holder: Any = body
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return body


MALFORMED = {
    "not json": (b"{not json", "not valid JSON"),
    "not utf-8": (b"\xff\xfe{}", "not valid JSON"),
    "a list": ([1, 2], "must be a JSON object"),
    "no version": ({"alerts": []}, "lacks its version"),
    "version 3": (_with(("version",), "3"), 'only "4"'),
    "version as number": (_with(("version",), 4), 'only "4"'),
    "no alerts": ({"version": "4"}, "lacks its list of alerts"),
    "alerts not a list": (_with(("alerts",), {"a": 1}), "lacks its list of alerts"),
    "alert not an object": (_with(("alerts",), ["x"]), "alerts[0] must be an object"),
    "no fingerprint": (_without("fingerprint"), "lacks fingerprint"),
    "no labels": (_without("labels"), "lacks labels"),
    "no startsAt": (_without("startsAt"), "lacks startsAt"),
    "no status": (_without("status"), "lacks status"),
    "bad status": (_with(("alerts", 0, "status"), "pending"), "firing or resolved"),
    "empty fingerprint": (_with(("alerts", 0, "fingerprint"), " "), "non-empty string"),
    "labels not strings": (_with(("alerts", 0, "labels"), {"a": 1}), "object of strings"),
    "bad time": (_with(("alerts", 0, "startsAt"), "yesterday"), "not an RFC 3339 time"),
    "naive time": (_with(("alerts", 0, "startsAt"), "2026-11-30T21:52:26"), "no time zone"),
    "zero startsAt": (_with(("alerts", 0, "startsAt"), "0001-01-01T00:00:00Z"), "not set"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_payload_is_refused_with_a_clear_message(world: World, case: str) -> None:
    body, words = MALFORMED[case]
    response = post(body)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert not Alert.objects.exists()
    assert AuditEvent.objects.get(action="alertmanager.rejected").reason == response.json()["error"]


def test_one_bad_alert_refuses_the_whole_payload(world: World) -> None:
    bad = copy.deepcopy(am_alert())
    del bad["fingerprint"]
    response = post(payload(am_alert(), bad))
    assert response.status_code == 400
    assert "alerts[1] lacks fingerprint" in response.json()["error"]
    assert not Alert.objects.exists()


def test_it_refuses_what_is_not_json(world: World) -> None:
    response = post(json.dumps(payload()), content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert not Alert.objects.exists()


def test_it_refuses_a_body_over_the_limit(world: World) -> None:
    body = payload()
    body["alerts"][0]["annotations"]["summary"] = "x" * (1024 * 1024)
    response = post(body)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]
    assert not Alert.objects.exists()


def test_it_refuses_too_many_alerts(world: World) -> None:
    many = [dict(am_alert(), fingerprint=f"f{index}") for index in range(1001)]
    response = post(payload(*many))
    assert response.status_code == 413
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    ("token", "words"),
    [(None, "Bearer <token>"), ("wrong", "token is wrong"), ("", "Bearer <token>")],
)
def test_it_refuses_a_missing_or_wrong_token(world: World, token: str | None, words: str) -> None:
    response = post(payload(), token=token)
    assert response.status_code == 401
    assert words in response.json()["error"]
    assert not Alert.objects.exists()
    event = AuditEvent.objects.get(action="alertmanager.refused")
    assert event.outcome == "denied"


def test_basic_auth_is_not_a_bearer_token(world: World) -> None:
    response = Client().post(
        URL,
        data=json.dumps(payload()),
        content_type="application/json",
        headers={"Authorization": f"Basic {TOKEN}"},
    )
    assert response.status_code == 401
    assert not Alert.objects.exists()


def test_without_a_configured_token_the_receiver_is_off(world: World) -> None:
    with override_settings(ALERTMANAGER_TOKEN=""):
        response = post(payload(), token="")
    assert response.status_code == 503
    assert "ALERTMANAGER_TOKEN" in response.json()["error"]
    assert not Alert.objects.exists()


def test_get_is_not_allowed(world: World) -> None:
    response = Client().get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["error"]


def test_no_csrf_token_is_needed(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        URL,
        data=json.dumps(payload()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200
    assert Alert.objects.count() == 1
