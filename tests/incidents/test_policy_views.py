"""The admins' pages for severities and escalation policies: who may use them, the forms'
clear refusals of bad input (nothing saved, never a 500), the webhook URL kept secret (never
shown back, masked in the audit history), and a fixed number of queries per page."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.audit.records import MASK
from apps.incidents.models import EscalationLevel, EscalationPolicy, Severity
from apps.incidents.policy_forms import format_period, parse_period
from tests.conftest import client_for

pytestmark = pytest.mark.core

HTMX = {"HX-Request": "true"}
WEBHOOK = "https://hooks.example.com/services/T000/B000/very-secret-token"


@pytest.fixture
def sev1(db: None) -> Severity:
    return Severity.objects.get(key="SEV-1")


@pytest.fixture
def default_policy(db: None) -> EscalationPolicy:
    return EscalationPolicy.objects.get(is_default=True)


def severity_data(severity: Severity, **changes: Any) -> dict[str, Any]:
    data = {
        "key": severity.key,
        "name": severity.name,
        "rank": severity.rank,
        "description": severity.description,
        "acknowledge_within": format_period(severity.acknowledge_within),
        "update_every": format_period(severity.update_every),
        "business_days": "on" if severity.business_days else "",
        "requires_postmortem": "on" if severity.requires_postmortem else "",
        "blocks_deploys": "on" if severity.blocks_deploys else "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value not in ("", None, False)}


def policy_data(
    policy: EscalationPolicy | None,
    levels: list[dict[str, Any]],
    **fields: Any,
) -> dict[str, Any]:
    """The POST of the policy page: its fields and one row per level (``id`` for a level
    that exists, ``delete`` to remove it)."""
    data: dict[str, Any] = {
        "name": policy.name if policy else "",
        "email_enabled": "on",
        "levels-TOTAL_FORMS": str(len(levels)),
        "levels-INITIAL_FORMS": str(sum(1 for level in levels if level.get("id"))),
        "levels-MIN_NUM_FORMS": "0",
        "levels-MAX_NUM_FORMS": "1000",
    }
    if policy is not None and policy.is_default:
        data["default"] = "on"
    for index, level in enumerate(levels):
        prefix = f"levels-{index}-"
        data[f"{prefix}id"] = str(level.get("id") or "")
        data[f"{prefix}policy"] = str(policy.pk if policy and policy.pk else "")
        data[f"{prefix}level"] = str(level.get("level", ""))
        data[f"{prefix}name"] = level.get("name", "")
        data[f"{prefix}users"] = [str(user.pk) for user in level.get("users", [])]
        data[f"{prefix}groups"] = [str(group.pk) for group in level.get("groups", [])]
        if level.get("delete"):
            data[f"{prefix}DELETE"] = "on"
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


def existing_levels(policy: EscalationPolicy) -> list[dict[str, Any]]:
    return [
        {
            "id": level.pk,
            "level": level.level,
            "name": level.name,
            "users": list(level.users.all()),
            "groups": list(level.groups.all()),
        }
        for level in policy.levels.all()
    ]


def levels_of(policy: EscalationPolicy) -> list[tuple[int, str, list[str]]]:
    return [
        (level.level, level.name, sorted(user.username for user in level.users.all()))
        for level in EscalationLevel.objects.filter(policy=policy).prefetch_related("users")
    ]


# --- periods ----------------------------------------------------------------------------


def test_periods_read_and_write_as_people_type_them() -> None:
    assert parse_period("5") == timedelta(minutes=5)
    assert parse_period("15m") == timedelta(minutes=15)
    assert parse_period("2h") == timedelta(hours=2)
    assert parse_period("1d") == timedelta(days=1)
    assert parse_period("1h 30m") == timedelta(minutes=90)
    assert parse_period("2 hours") == timedelta(hours=2)
    for bad in ("soon", "5x", "h", "5m soon", "-5"):
        with pytest.raises(ValueError):
            parse_period(bad)
    assert format_period(timedelta(minutes=90)) == "1h 30m"
    assert format_period(timedelta(days=1)) == "1d"
    assert format_period(None) == ""


# --- severities -------------------------------------------------------------------------


def test_it_lists_the_severities_for_an_admin(admin: Any) -> None:
    response = client_for(admin).get("/incidents/severities/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    for key in ("SEV-1", "SEV-2", "SEV-3", "SEV-4"):
        assert key in content
    assert "every 15m" in content
    assert '1d <span class="small text-body-secondary">(business days)</span>' in content
    assert "Blocked" in content  # in words, not colour alone


def test_the_severities_htmx_request_gets_only_the_table(admin: Any) -> None:
    response = client_for(admin).get("/incidents/severities/", headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="severities"')
    assert "<html" not in content


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_viewers_and_operators_may_not_edit_severities(
    persona: str, request: pytest.FixtureRequest, sev1: Severity
) -> None:
    user = request.getfixturevalue(persona)
    client = client_for(user)
    assert client.get("/incidents/severities/").status_code == 403
    response = client.post(
        f"/incidents/severities/{sev1.pk}/", severity_data(sev1, acknowledge_within="1h")
    )
    assert response.status_code == 403
    sev1.refresh_from_db()
    assert sev1.acknowledge_within == timedelta(minutes=5)
    assert AuditEvent.objects.filter(action="access.denied", actor=user).count() == 2


def test_the_severities_list_refuses_a_post(admin: Any) -> None:
    assert client_for(admin).post("/incidents/severities/").status_code == 405


def test_an_admin_changes_a_severity_and_it_is_audited(admin: Any, sev1: Severity) -> None:
    client = client_for(admin)
    page = client.get(f"/incidents/severities/{sev1.pk}/")
    assert page.status_code == 200
    assert 'value="5m"' in page.content.decode()

    response = client.post(
        f"/incidents/severities/{sev1.pk}/",
        severity_data(sev1, acknowledge_within="10m", update_every="20m"),
    )

    assert response.status_code == 302
    assert response["Location"] == "/incidents/severities/"
    sev1.refresh_from_db()
    assert sev1.acknowledge_within == timedelta(minutes=10)
    assert sev1.update_every == timedelta(minutes=20)
    event = AuditEvent.objects.get(action="severity.changed")
    assert event.actor == admin
    assert event.target_type == "incidents.severity"
    assert event.data["changes"] == {
        "acknowledge_within": ["0:05:00", "0:10:00"],
        "update_every": ["0:15:00", "0:20:00"],
    }


def test_an_empty_cadence_means_no_reminders(admin: Any, sev1: Severity) -> None:
    response = client_for(admin).post(
        f"/incidents/severities/{sev1.pk}/", severity_data(sev1, update_every="")
    )
    assert response.status_code == 302
    sev1.refresh_from_db()
    assert sev1.update_every is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"acknowledge_within": "soon"}, "Write a period like 5m, 2h, 1d or 1h 30m."),
        ({"acknowledge_within": "0m"}, "At least one minute."),
        ({"acknowledge_within": ""}, "This field is required."),
        ({"update_every": "40d"}, "At most 30 days."),
        ({"rank": "2"}, "Severity with this Rank already exists."),
        ({"key": "SEV-2"}, "Severity with this Key already exists."),
    ],
)
def test_a_bad_severity_is_refused_with_a_clear_message_and_nothing_saved(
    admin: Any, sev1: Severity, changes: dict[str, str], message: str
) -> None:
    response = client_for(admin).post(
        f"/incidents/severities/{sev1.pk}/", severity_data(sev1, **changes)
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    sev1.refresh_from_db()
    assert (sev1.key, sev1.rank, sev1.acknowledge_within) == ("SEV-1", 1, timedelta(minutes=5))
    assert not AuditEvent.objects.filter(action="severity.changed").exists()


def test_an_unknown_severity_is_404(admin: Any) -> None:
    assert client_for(admin).get("/incidents/severities/999999/").status_code == 404


# --- policies ---------------------------------------------------------------------------


def test_it_lists_the_policies_with_their_levels(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    lead = User.objects.create(username="lena-lead", email="lena@example.com")
    EscalationLevel.objects.get(policy=default_policy, level=2).users.set([lead])
    default_policy.webhook_url = WEBHOOK
    default_policy.save(update_fields=["webhook_url_encrypted"])

    response = client_for(admin).get("/incidents/policies/")
    content = response.content.decode()

    assert response.status_code == 200
    assert "Default" in content
    assert "Engineering lead" in content
    assert "lena-lead" in content
    assert "Nobody yet" in content  # levels 1 and 3 tell no one: said in words
    assert "Set, stored encrypted" in content
    assert "hooks.example.com" not in content


def test_the_policies_htmx_request_gets_only_the_table(admin: Any) -> None:
    response = client_for(admin).get("/incidents/policies/", headers=HTMX)
    assert response.content.decode().lstrip().startswith('<div id="policies"')


def test_the_policies_page_queries_do_not_grow_with_the_policies(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    client = client_for(admin)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/incidents/policies/").status_code == 200
        return len(captured)

    queries()
    few = queries()
    group = Group.objects.create(name="sre")
    people = [User.objects.create(username=f"person{n}") for n in range(5)]
    for number in range(5):
        policy = EscalationPolicy.objects.create(name=f"Team {number}")
        for level_number in (1, 2, 3):
            level = EscalationLevel.objects.create(
                policy=policy, level=level_number, name=f"L{level_number}"
            )
            level.users.set(people)
            level.groups.set([group])
    assert queries() == few


def test_the_policy_edit_page_queries_do_not_grow_with_the_levels(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    client = client_for(admin)
    url = f"/incidents/policies/{default_policy.pk}/"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    queries()
    few = queries()
    people = [User.objects.create(username=f"person{n}") for n in range(5)]
    for level_number in range(4, 9):
        level = EscalationLevel.objects.create(
            policy=default_policy, level=level_number, name=f"L{level_number}"
        )
        level.users.set(people)
    assert queries() == few


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_viewers_and_operators_may_not_touch_the_policies(
    persona: str, request: pytest.FixtureRequest, default_policy: EscalationPolicy
) -> None:
    user = request.getfixturevalue(persona)
    client = client_for(user)
    assert client.get("/incidents/policies/").status_code == 403
    assert client.get("/incidents/policies/add/").status_code == 403
    response = client.post(
        f"/incidents/policies/{default_policy.pk}/",
        policy_data(default_policy, existing_levels(default_policy), webhook_url=WEBHOOK),
    )
    assert response.status_code == 403
    default_policy.refresh_from_db()
    assert default_policy.webhook_url == ""
    assert AuditEvent.objects.filter(action="access.denied", actor=user).count() == 3


def test_the_policy_page_shows_the_levels_and_a_numbered_row_to_add_one(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    response = client_for(admin).get(f"/incidents/policies/{default_policy.pk}/")
    content = response.content.decode()
    assert response.status_code == 200
    for index, (number, name) in enumerate([(1, "On-call engineer"), (2, "Engineering lead")]):
        assert f'name="levels-{index}-level" value="{number}"' in content
        assert f'name="levels-{index}-name" value="{name}"' in content
    assert 'name="levels-3-level" value="4"' in content
    assert content.count("New level (leave empty to add none)") == 1
    assert content.count("Remove this level") == 3


def test_the_webhook_url_is_write_only_and_masked_in_the_audit(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    client = client_for(admin)
    url = f"/incidents/policies/{default_policy.pk}/"

    response = client.post(
        url, policy_data(default_policy, existing_levels(default_policy), webhook_url=WEBHOOK)
    )

    assert response.status_code == 302
    assert response["Location"] == "/incidents/policies/"
    default_policy.refresh_from_db()
    assert default_policy.webhook_url == WEBHOOK
    assert WEBHOOK not in default_policy.webhook_url_encrypted  # encrypted at rest
    event = AuditEvent.objects.get(action="escalationpolicy.changed")
    assert event.data["changes"] == {"webhook_url": ["", MASK]}
    assert "very-secret-token" not in json.dumps(event.data)

    page = client.get(url).content.decode()
    assert "very-secret-token" not in page
    assert "A webhook is set" in page

    # Left empty: the stored one stays.
    response = client.post(url, policy_data(default_policy, existing_levels(default_policy)))
    assert response.status_code == 302
    default_policy.refresh_from_db()
    assert default_policy.webhook_url == WEBHOOK

    # Removed on purpose.
    response = client.post(
        url,
        policy_data(default_policy, existing_levels(default_policy), remove_webhook="on"),
    )
    assert response.status_code == 302
    default_policy.refresh_from_db()
    assert default_policy.webhook_url == ""
    last = AuditEvent.objects.filter(action="escalationpolicy.changed").order_by("-seq")[0]
    assert last.data["changes"] == {"webhook_url": [MASK, ""]}


@pytest.mark.parametrize(
    ("fields", "field_error"),
    [
        ({"webhook_url": "not a url"}, "Enter a valid URL."),
        ({"webhook_url": "ftp://hooks.example.com/x"}, "Enter a valid URL."),
        ({"name": ""}, "This field is required."),
        (
            {"default": None},
            "Incidents need a default policy: make another policy the default instead.",
        ),
    ],
)
def test_a_bad_policy_is_refused_with_a_clear_message_and_nothing_saved(
    admin: Any, default_policy: EscalationPolicy, fields: dict[str, Any], field_error: str
) -> None:
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/",
        policy_data(default_policy, existing_levels(default_policy), **fields),
    )
    assert response.status_code == 400
    content = response.content.decode()
    assert field_error in content
    assert "Nothing was saved" in content
    default_policy.refresh_from_db()
    assert (default_policy.name, default_policy.is_default) == ("Default", True)
    assert default_policy.webhook_url == ""
    assert not AuditEvent.objects.filter(action="escalationpolicy.changed").exists()


def test_replacing_and_removing_the_webhook_at_once_is_refused(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    default_policy.webhook_url = WEBHOOK
    default_policy.save(update_fields=["webhook_url_encrypted"])
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/",
        policy_data(
            default_policy,
            existing_levels(default_policy),
            webhook_url="https://hooks.example.com/other",
            remove_webhook="on",
        ),
    )
    assert response.status_code == 400
    assert "Either paste a new URL or remove the webhook, not both." in response.content.decode()
    default_policy.refresh_from_db()
    assert default_policy.webhook_url == WEBHOOK


def test_an_admin_names_people_and_groups_adds_and_removes_levels(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    lead = User.objects.create(username="lena-lead")
    cto = User.objects.create(username="carla-cto")
    sre = Group.objects.create(name="sre")
    levels = existing_levels(default_policy)
    levels[0]["groups"] = [sre]
    levels[1]["users"] = [lead]
    levels[2]["delete"] = True
    levels.append({"level": 3, "name": "Chief technology officer", "users": [cto]})

    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/", policy_data(default_policy, levels)
    )

    assert response.status_code == 302
    assert levels_of(default_policy) == [
        (1, "On-call engineer", []),
        (2, "Engineering lead", ["lena-lead"]),
        (3, "Chief technology officer", ["carla-cto"]),
    ]
    assert list(
        EscalationLevel.objects.get(policy=default_policy, level=1).groups.values_list(
            "name", flat=True
        )
    ) == ["sre"]
    event = AuditEvent.objects.get(action="escalationpolicy.changed")
    before, after = event.data["changes"]["levels"]
    assert before[1] == "2 Engineering lead: nobody"
    assert after == [
        "1 On-call engineer: nobody; groups: sre",
        "2 Engineering lead: lena-lead",
        "3 Chief technology officer: carla-cto",
    ]


def test_two_levels_can_swap_places_in_one_edit(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    levels = existing_levels(default_policy)
    levels[1]["level"], levels[2]["level"] = 3, 2
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/", policy_data(default_policy, levels)
    )
    assert response.status_code == 302
    assert [(number, name) for number, name, _ in levels_of(default_policy)] == [
        (1, "On-call engineer"),
        (2, "CTO"),
        (3, "Engineering lead"),
    ]


@pytest.mark.parametrize(
    ("numbers", "message"),
    [
        ([1, 2, 4], "with no gap and no repeat (they are now 1, 2, 4)"),
        ([1, 2, 2], "with no gap and no repeat (they are now 1, 2, 2)"),
        ([2, 3, 4], "with no gap and no repeat (they are now 2, 3, 4)"),
        ([1, 2, 0], "Ensure this value is greater than or equal to 1."),
    ],
)
def test_levels_must_be_numbered_without_gaps(
    admin: Any, default_policy: EscalationPolicy, numbers: list[int], message: str
) -> None:
    levels = existing_levels(default_policy)
    for level, number in zip(levels, numbers, strict=True):
        level["level"] = number
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/", policy_data(default_policy, levels)
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert [number for number, _, _ in levels_of(default_policy)] == [1, 2, 3]


def test_a_policy_without_levels_is_refused(admin: Any, default_policy: EscalationPolicy) -> None:
    levels = existing_levels(default_policy)
    for level in levels:
        level["delete"] = True
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/", policy_data(default_policy, levels)
    )
    assert response.status_code == 400
    assert "A policy needs level 1" in response.content.decode()
    assert len(levels_of(default_policy)) == 3


def test_an_admin_adds_a_policy_that_becomes_the_default(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    client = client_for(admin)
    page = client.get("/incidents/policies/add/")
    assert page.status_code == 200
    content = page.content.decode()
    assert content.count("New level (leave empty to add none)") == 3
    for index in range(3):  # the empty rows come numbered 1, 2, 3
        assert f'name="levels-{index}-level" value="{index + 1}"' in content

    oncall = User.objects.create(username="oscar-oncall")
    levels: list[dict[str, Any]] = [
        {"level": 1, "name": "Database on-call", "users": [oncall]},
        {"level": 2},  # the empty rows of the page: ignored
        {"level": 3},
    ]
    response = client.post(
        "/incidents/policies/add/",
        policy_data(None, levels, name="Databases", default="on", webhook_url=WEBHOOK),
    )

    assert response.status_code == 302
    created = EscalationPolicy.objects.get(name="Databases")
    assert created.is_default
    assert created.webhook_url == WEBHOOK
    assert levels_of(created) == [(1, "Database on-call", ["oscar-oncall"])]
    default_policy.refresh_from_db()
    assert not default_policy.is_default
    event = AuditEvent.objects.get(action="escalationpolicy.created")
    assert event.actor == admin
    assert event.data["changes"]["webhook_url"] == ["", MASK]
    assert event.data["changes"]["is_default"] == ["False", "True"]
    assert "very-secret-token" not in json.dumps(event.data)


def test_a_new_policy_needs_a_unique_name_and_level_1(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    client = client_for(admin)
    response = client.post(
        "/incidents/policies/add/", policy_data(None, [{"level": 1}], name="Default")
    )
    assert response.status_code == 400
    content = response.content.decode()
    assert "Escalation policy with this Name already exists." in content
    assert "A policy needs level 1" in content
    assert EscalationPolicy.objects.count() == 1


def test_a_tampered_level_form_is_a_400_not_a_500(
    admin: Any, default_policy: EscalationPolicy
) -> None:
    response = client_for(admin).post(
        f"/incidents/policies/{default_policy.pk}/",
        {"name": "Default", "default": "on", "levels-TOTAL_FORMS": "x"},
    )
    assert response.status_code == 400
    assert EscalationPolicy.objects.get().name == "Default"
