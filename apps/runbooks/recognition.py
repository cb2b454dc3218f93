"""Which of a runbook's commands the portal can carry out itself, as which operation kind or
page, on what, with which parameters.

The recognizer only reads text: it never runs, expands or evaluates a command. It is total
(any text gives a Recognition) and strict: a parameter that is not exactly a name, a number
or an image reference (``deployment/x;rm -rf /``) makes the command unrecognized, so that a
button never carries shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps.runbooks.shell_words import Unbalanced, Word, split_words

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
NUMBER = re.compile(r"^[0-9]{1,6}$")
IMAGE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_VALUE = re.compile(r"^[A-Za-z0-9_.,:/@+=-]*$")
PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
REDIS_KEY = re.compile(r"^[A-Za-z0-9_.:*?\[\]{}/-]{1,500}$")
QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
WHOLE_PLACEHOLDER = re.compile(r"^(<[^<>]+>|\$\([^()]*\)|\{[^{}]+\})$")
CRON_FIELD = re.compile(r"^[0-9*/,-]+$")
URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")

PROGRAMS = {
    "kubectl",
    "pg_dump",
    "pg_restore",
    "psql",
    "redis-cli",
    "curl",
    "docker",
    "docker-compose",
}
_SHELL_SYNTAX = re.compile(r"[\'\"\\\\$`;&|<>()\n{}]")
DEPLOYMENT_TYPES = {"deployment", "deployments", "deploy", "deployment.apps", "deployments.apps"}


@dataclass
class Recognition:
    """What one command is to the portal. ``kind`` is an operation kind of the registry,
    ``view`` a read-only page; ``recognized`` means one of them can carry it out."""

    command: str
    action: str = ""  # what the command does, as the tool names it ("kubectl rollout undo")
    kind: str = ""
    view: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    ask: list[str] = field(default_factory=list)  # placeholders that become form fields
    notes: list[str] = field(default_factory=list)
    reason: str = ""  # why it is not recognized

    @property
    def recognized(self) -> bool:
        return bool(self.kind or self.view) and not self.reason

    def refuse(self, reason: str) -> Recognition:
        self.reason = self.reason or reason
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "recognized": self.recognized,
            "action": self.action,
            "kind": self.kind if self.recognized else "",
            "view": self.view if self.recognized else "",
            "target": self.target,
            "params": self.params,
            "ask": self.ask,
            "reason": self.reason,
        }


class Options:
    """A command's arguments: options (with their values) and positional words."""

    def __init__(self, words: list[Word], with_value: set[str]) -> None:
        self.values: dict[str, Word] = {}
        self.flags: set[str] = set()
        self.positional: list[Word] = []
        self.rest: list[Word] = []  # after "--"
        index = 0
        while index < len(words):
            word = words[index]
            text = word.value
            if text == "--":
                self.rest = words[index + 1 :]
                break
            if text.startswith("--") and "=" in text:
                name, _, value = text.partition("=")
                self.values[name] = Word(value, list(word.placeholders), escaped=word.escaped)
            elif text in with_value and index + 1 < len(words):
                self.values[text] = words[index + 1]
                index += 1
            elif len(text) > 2 and text[0] == "-" and text[1] != "-" and text[:2] in with_value:
                self.values[text[:2]] = Word(
                    text[2:], list(word.placeholders), escaped=word.escaped
                )
            elif text.startswith("-") and len(text) > 1:
                self.flags.add(text)
            else:
                self.positional.append(word)
            index += 1

    def value(self, *names: str) -> Word | None:
        return next((self.values[name] for name in names if name in self.values), None)


def _set(
    result: Recognition,
    into: dict[str, Any],
    name: str,
    word: Word | None,
    pattern: re.Pattern[str],
    convert: Callable[[str], Any] = str,
) -> bool:
    """Put a word into params or target if it is exactly what ``pattern`` allows; a
    placeholder is asked for instead. False (and the command refused) otherwise."""
    if word is None:
        return True
    if word.escaped:
        result.refuse(f"{name} {word.value!r} has a backslash escape: write it plainly.")
        return False
    if word.placeholders:
        if not WHOLE_PLACEHOLDER.match(word.value):
            # Text glued to an expansion ("x$(id)", "api`id`") is shell, not a placeholder.
            result.refuse(f"{name} {word.value!r} mixes text and shell.")
            return False
        result.ask.append(name)
        return True
    if not pattern.match(word.value):
        result.refuse(f"{name} {word.value!r} is not a plain value the portal accepts.")
        return False
    into[name] = convert(word.value)
    return True


# kubectl ------------------------------------------------------------------------------

KUBECTL_VALUES = {
    "-n",
    "--namespace",
    "-c",
    "--container",
    "--tail",
    "--replicas",
    "--to-revision",
    "--context",
    "--cluster",
    "-l",
    "--selector",
    "-o",
    "--output",
    "--since",
    "-f",
    "--filename",
    "-k",
    "--kustomize",
}


def _deployment_reference(result: Recognition, positional: list[Word]) -> list[Word]:
    """Take ``deployment/x`` or ``deployment x`` off the front; the remaining words."""
    if not positional:
        return positional
    first = positional[0].value
    kind, slash, name = first.partition("/")
    if slash and kind.lower() in DEPLOYMENT_TYPES:
        word = Word(name, positional[0].placeholders, escaped=positional[0].escaped)
        rest = positional[1:]
    elif first.lower() in DEPLOYMENT_TYPES and len(positional) > 1:
        word, rest = positional[1], positional[2:]
    else:
        return positional
    result.target["type"] = "deployment"
    _set(result, result.target, "deployment", word, DNS_SUBDOMAIN)
    return rest


def _kubectl(result: Recognition, words: list[Word]) -> Recognition:
    # -f is a file for apply and "follow" for logs: look at the verb first.
    is_logs = any(w.value == "logs" for w in words)
    with_value = KUBECTL_VALUES - {"-f"} if is_logs else KUBECTL_VALUES
    options = Options(words, with_value)
    positional = options.positional
    verbs = [w.value for w in positional[:2]]
    namespace = options.value("-n", "--namespace")
    result.target["namespace"] = None
    _set(result, result.target, "namespace", namespace, DNS_LABEL)
    if namespace is None:
        del result.target["namespace"]

    def with_deployment(count: int, action: str) -> list[Word]:
        result.action = f"kubectl {action}"
        return _deployment_reference(result, positional[count:])

    if verbs[:1] == ["rollout"] and len(verbs) == 2 and verbs[1] in ("undo", "restart", "status"):
        rest = with_deployment(2, f"rollout {verbs[1]}")
        result.kind = {"undo": "services.rollback", "restart": "services.restart"}.get(verbs[1], "")
        result.view = "services.target" if verbs[1] == "status" else ""
        _set(result, result.params, "to_revision", options.value("--to-revision"), NUMBER, int)
        return _deployment_only(result, rest)
    if verbs[:1] == ["scale"]:
        rest = with_deployment(1, "scale")
        replicas = options.value("--replicas")
        if replicas is None:
            return result.refuse("kubectl scale without --replicas.")
        _set(result, result.params, "replicas", replicas, NUMBER, int)
        result.kind = "services.scale"
        if result.params.get("replicas") == 0:
            # The portal's emergency action: scaling to 0 blocks all traffic.
            result.kind = "services.block_traffic"
            del result.params["replicas"]
        return _deployment_only(result, rest)
    if verbs == ["set", "image"]:
        rest = with_deployment(2, "set image")
        if len(rest) != 1 or "=" not in rest[0].value:
            return result.refuse("kubectl set image with other than one container=image.")
        container, _, image = rest[0].value.partition("=")
        escaped = rest[0].escaped
        _set(result, result.target, "container", Word(container, escaped=escaped), DNS_LABEL)
        _set(result, result.params, "image", Word(image, rest[0].placeholders, escaped), IMAGE)
        result.kind = "services.rollout"
        return _deployment_only(result, [])
    if verbs == ["set", "env"]:
        rest = with_deployment(2, "set env")
        set_lines, unset = [], []
        for word in rest:
            name, equals, value = word.value.partition("=")
            if not equals and name.endswith("-") and ENV_NAME.match(name[:-1]):
                unset.append(name[:-1])
            elif (
                equals and ENV_NAME.match(name) and ENV_VALUE.match(value) and not word.placeholders
            ):
                set_lines.append(f"{name}={value}")
            else:
                return result.refuse(f"{word.value!r} is not NAME=value or NAME-.")
        if not set_lines and not unset:
            return result.refuse("kubectl set env without a variable.")
        result.params = {"set_flags": "\n".join(set_lines), "unset_flags": " ".join(unset)}
        result.kind = "services.set_flags"
        return _deployment_only(result, [])
    if verbs[:1] == ["logs"]:
        rest = with_deployment(1, "logs")
        if "deployment" not in result.target and rest:
            _set(result, result.params, "pod", rest[0], DNS_SUBDOMAIN)
            rest = rest[1:]
        _set(result, result.params, "tail", options.value("--tail"), NUMBER, int)
        if options.flags & {"-f", "--follow"}:
            result.notes.append("follow: the portal shows the last lines once")
        result.kind = "services.logs"
        return _deployment_only(result, rest)
    if verbs[:2] in (["get", "pods"], ["get", "pod"], ["get", "po"]):
        result.action = "kubectl get pods"
        result.target["type"] = "namespace"
        result.view = "services.target"
        if "namespace" not in result.target and "namespace" not in result.ask:
            return result.refuse("kubectl get pods without -n: which namespace?")
        return result if len(positional) == 2 else result.refuse("kubectl get pods with names.")
    if verbs[:1] == ["exec"]:
        result.action = "kubectl exec"
        _deployment_reference(result, positional[1:])
        if options.rest[:1] and options.rest[0].value in ("kubectl", "docker"):
            return result.refuse("kubectl exec of another kubectl or docker.")
        inner = _recognize_words(" ".join(w.value for w in options.rest), options.rest)
        if inner.view == "services.health" and "deployment" in result.target:
            result.view = "services.health"
            result.params = inner.params
            result.notes.append(f"runs inside the pod: {inner.action}")
            return result
        return result.refuse("kubectl exec runs a program inside a pod: no portal operation.")
    # Not the portal's; still say what it is about, for the coverage view.
    result.action = "kubectl " + " ".join(verbs[:1])
    _deployment_reference(result, positional[1:])
    return result.refuse(f"The portal has no operation for kubectl {' '.join(verbs[:1])}.")


def _deployment_only(result: Recognition, rest: list[Word]) -> Recognition:
    if rest:
        return result.refuse(f"Unexpected words: {' '.join(w.value for w in rest)}.")
    if "deployment" not in result.target and "deployment" not in result.ask:
        if result.action == "kubectl logs" and ("pod" in result.params or "pod" in result.ask):
            result.target["type"] = "pod"
            return result
        return result.refuse("No deployment named: write deployment/NAME.")
    return result


# PostgreSQL -------------------------------------------------------------------------------

PG_VALUES = {
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
    "-d",
    "--dbname",
    "-F",
    "--format",
    "-f",
    "--file",
    "-j",
    "--jobs",
    "-t",
    "--table",
    "-n",
    "--schema",
    "-Z",
    "--compress",
}
PSQL_VALUES = PG_VALUES | {"-c", "--command"}  # for pg_dump and pg_restore, -c is --clean


def _database(result: Recognition, options: Options, positional_db: bool) -> list[Word]:
    rest = list(options.positional)
    database = options.value("-d", "--dbname")
    if database is None and positional_db and rest:
        database = rest.pop(0)
    result.target["type"] = "database"
    for name, word, pattern in (
        ("database", database, PG_NAME),
        ("host", options.value("-h", "--host"), HOST),
        ("user", options.value("-U", "--username"), PG_NAME),
        ("port", options.value("-p", "--port"), NUMBER),
    ):
        if word is not None and word.placeholders:
            result.target[name] = None  # named by the registered target, not asked
        else:
            _set(result, result.target, name, word, pattern)
    return rest


def _pg_dump(result: Recognition, words: list[Word], output: Word | None) -> Recognition:
    result.action = "pg_dump"
    options = Options(words, PG_VALUES)
    rest = _database(result, options, positional_db=True)
    if rest:
        return result.refuse(f"Unexpected words: {' '.join(w.value for w in rest)}.")
    file = output or options.value("-f", "--file")
    if file is not None:
        result.notes.append(f"file {file.value}: the portal names and stores the backup itself")
    result.kind = "backups.backup"
    return result


def _pg_restore(result: Recognition, words: list[Word]) -> Recognition:
    result.action = "pg_restore"
    options = Options(words, PG_VALUES)
    rest = _database(result, options, positional_db=False)
    if len(rest) > 1:
        return result.refuse("pg_restore with more than one file.")
    if rest:
        result.notes.append(f"file {rest[0].value}: choose the portal's backup to restore")
    result.kind = "backups.restore"
    result.ask.append("backup")
    return result


def _psql(result: Recognition, words: list[Word], source: Word | None) -> Recognition:
    result.action = "psql"
    options = Options(words, PSQL_VALUES)
    if options.flags & {"--version", "-V", "--help", "-?", "-l", "--list"}:
        return result.refuse("psql asked about itself, not a database.")
    rest = _database(result, options, positional_db=True)
    if rest:
        return result.refuse(f"Unexpected words: {' '.join(w.value for w in rest)}.")
    sql = options.value("-c", "--command")
    if source is not None:
        result.action = "psql < file"
        result.notes.append(f"file {source.value}: choose the portal's backup to restore")
        result.kind = "backups.restore"
        result.ask.append("backup")
        return result
    if sql is None:
        result.view = "datastores.postgres"
        return result
    text = " ".join(sql.value.split()).rstrip(";").strip().upper()
    if text == "SELECT 1":
        result.action = "psql -c SELECT 1"
        result.view = "datastores.postgres"
        return result
    if "PG_STAT_ACTIVITY" in text and text.startswith("SELECT"):
        result.action = "psql -c pg_stat_activity"
        result.view = "datastores.postgres"
        return result
    return result.refuse("The portal runs no free SQL; the datastore console shows activity.")


# Redis --------------------------------------------------------------------------------

REDIS_VALUES = {"-h", "-p", "-n", "-a", "-u", "--user", "--pass", "--pattern", "--count"}
REDIS_READS = {"PING", "INFO", "LLEN", "LRANGE", "DBSIZE", "TYPE", "TTL"}


def _redis_cli(result: Recognition, words: list[Word]) -> Recognition:
    result.action = "redis-cli"
    options = Options(words, REDIS_VALUES)
    result.target["type"] = "redis"
    _set(result, result.target, "host", options.value("-h"), HOST)
    _set(result, result.target, "db", options.value("-n"), NUMBER, int)
    if not options.positional:
        if "--scan" in options.flags:
            result.action = "redis-cli --scan"
            result.view = "datastores.redis"
            return result
        result.view = "datastores.redis"
        return result
    command = options.positional[0].value.upper()
    arguments = options.positional[1:]
    result.action = f"redis-cli {command}"
    if command in REDIS_READS:
        result.view = "datastores.redis"
        if arguments:
            _set(result, result.params, "key", arguments[0], REDIS_KEY)
        return result
    if command == "FLUSHDB" and all(a.value.upper() in ("ASYNC", "SYNC") for a in arguments):
        result.kind = "datastores.redis_flushdb"
        result.ask.append("confirm_db")  # typed by the person, never prefilled
        return result
    if command in ("DEL", "UNLINK") and len(arguments) == 1:
        key = arguments[0]
        match = re.fullmatch(r"bull:([^:]+):failed", key.value)
        if match and not key.placeholders:
            result.kind = "datastores.redis_clear_failed"
            _set(result, result.params, "queue", Word(match.group(1)), QUEUE)
            return result
        result.kind = "datastores.redis_delete_keys"
        _set(result, result.params, "pattern", key, REDIS_KEY)
        return result
    return result.refuse(f"The portal has no operation for redis-cli {command}.")


# HTTP, Docker Compose ---------------------------------------------------------------------

CURL_VALUES = {
    "-X",
    "--request",
    "-H",
    "--header",
    "-d",
    "--data",
    "-o",
    "--output",
    "-m",
    "--max-time",
    "-u",
    "--user",
}


def _curl(result: Recognition, words: list[Word]) -> Recognition:
    result.action = "curl"
    options = Options(words, CURL_VALUES)
    method = (options.value("-X", "--request") or Word("GET")).value.upper()
    if method != "GET" or options.value("-d", "--data"):
        result.action = f"curl -X {method}"
        return result.refuse("An HTTP call that changes something: a custom HTTP action (later).")
    if len(options.positional) != 1:
        return result.refuse("curl with other than one URL.")
    url = options.positional[0]
    if url.placeholders or not URL.match(url.value):
        return result.refuse(f"{url.value!r} is not a plain http(s) URL.")
    if "/health" not in url.value:
        return result.refuse("Only health URLs are probed by the portal.")
    result.view = "services.health"
    result.target = {"type": "health_url", "url": url.value}
    return result


def _compose(result: Recognition, words: list[Word]) -> Recognition:
    options = Options(words, {"--tail", "-f", "--file", "-p", "--project-name"} - {"-f"})
    positional = options.positional
    verb = positional[0].value if positional else ""
    result.action = f"docker compose {verb}".strip()
    if verb not in ("restart", "logs"):
        return result.refuse(f"The portal has no operation for docker compose {verb}.")
    if len(positional) != 2:
        return result.refuse(f"docker compose {verb} of other than one service.")
    result.target["type"] = "compose_service"
    _set(result, result.target, "service", positional[1], DNS_LABEL)
    if verb == "restart":
        result.kind = "services.restart"
    else:
        result.kind = "services.logs"
        _set(result, result.params, "tail", options.value("--tail"), NUMBER, int)
    return result


def _docker_exec(
    result: Recognition, words: list[Word], redirect: tuple[str, Word] | None
) -> Recognition:
    """``docker exec [-i] [-t] CONTAINER program …``: the program inside is what counts."""
    index = 0
    while index < len(words) and words[index].value.startswith("-"):
        if words[index].value in ("-e", "--env", "-u", "--user", "-w", "--workdir"):
            index += 1
        index += 1
    if index + 1 >= len(words) or words[index + 1].value in ("docker", "kubectl"):
        result.action = "docker exec"
        return result.refuse("docker exec without a program the portal knows.")
    inner = _recognize_simple(words[index + 1 :], redirect)
    inner.notes.append(f"inside the container {words[index].value}")
    return inner


# The dispatch -------------------------------------------------------------------------


def _recognize_simple(words: list[Word], redirect: tuple[str, Word] | None) -> Recognition:
    result = Recognition(" ".join(w.value for w in words))
    program = words[0].value if words else ""
    arguments = words[1:]
    if program == "docker" and arguments and arguments[0].value == "exec":
        return _docker_exec(result, arguments[1:], redirect)
    if redirect is not None:
        operator, file = redirect
        if program == "pg_dump" and operator in (">", ">>"):
            return _pg_dump(result, arguments, file)
        if program == "psql" and operator == "<":
            return _psql(result, arguments, file)
        result.action = program
        return result.refuse(f"A redirection {operator} the portal has no use for.")
    if program == "kubectl":
        return _kubectl(result, arguments)
    if program == "pg_dump":
        return _pg_dump(result, arguments, None)
    if program == "pg_restore":
        return _pg_restore(result, arguments)
    if program == "psql":
        return _psql(result, arguments, None)
    if program == "redis-cli":
        return _redis_cli(result, arguments)
    if program == "curl":
        return _curl(result, arguments)
    if program == "docker-compose" or (
        program == "docker" and arguments[:1] and arguments[0].value == "compose"
    ):
        return _compose(result, arguments[1:] if program == "docker" else arguments)
    result.action = program
    return result.refuse(f"The portal has no operation for {program or 'this'}.")


def _recognize_words(text: str, words: list[Word], schedule: bool = True) -> Recognition:
    if schedule and len(words) >= 6 and all(CRON_FIELD.match(w.value) for w in words[:5]):
        result = _recognize_words(text, words[5:], schedule=False)
        result.command = text
        return result.refuse("A cron schedule: the portal's own schedules do this.")
    stages: list[list[Word]] = [[]]
    for word in words:
        if word.is_operator and word.value in (";", "&&", "||", "&", "(", ")"):
            result = Recognition(text, action=_program(words))
            return result.refuse(f"It chains commands with {word.value!r}: run them one by one.")
        if word.is_operator and word.value == "|":
            stages.append([])
        else:
            stages[-1].append(word)
    first, redirect = _redirect(stages[0])
    if first is None:
        return Recognition(text, action=_program(words)).refuse(
            "A redirection to more than one file."
        )
    # redis-cli --scan --pattern P | xargs redis-cli DEL: deleting keys by pattern.
    if len(stages) == 2 and _is_scan_delete(first, stages[1]):
        result = _recognize_simple(first, None)
        pattern = Options(first, REDIS_VALUES).value("--pattern")
        result.action, result.view, result.kind = "redis-cli --scan | xargs DEL", "", ""
        result.kind = "datastores.redis_delete_keys"
        _set(result, result.params, "pattern", pattern, REDIS_KEY)
        result.command = text
        return result
    result = _recognize_simple(first, redirect)
    result.command = text
    for stage in stages[1:]:
        if stage and stage[0].value == "grep" and all(not w.is_operator for w in stage):
            result.notes.append("filtered with " + " ".join(w.value for w in stage))
        else:
            return result.refuse("It pipes into another program.")
    return result


def _is_scan_delete(first: list[Word], second: list[Word]) -> bool:
    return (
        bool(first)
        and first[0].value == "redis-cli"
        and "--scan" in (w.value for w in first)
        and [w.value for w in second[:1]] == ["xargs"]
        and [w.value.upper() for w in second[1:]][-2:] == ["REDIS-CLI", "DEL"]
        and len(second) == 3
    )


def _redirect(words: list[Word]) -> tuple[list[Word] | None, tuple[str, Word] | None]:
    kept: list[Word] = []
    redirect: tuple[str, Word] | None = None
    index = 0
    while index < len(words):
        word = words[index]
        if word.is_operator and word.value in (">", ">>", "<"):
            if redirect is not None or index + 1 >= len(words) or words[index + 1].is_operator:
                return None, None
            redirect = (word.value, words[index + 1])
            index += 2
            continue
        kept.append(word)
        index += 1
    return kept, redirect


def _program(words: list[Word]) -> str:
    return words[0].value if words and not words[0].is_operator else ""


def recognize(command: str) -> Recognition:
    """What ``command`` is to the portal. Total: any string gives a Recognition."""
    program = command.split(None, 1)[0] if command.strip() else ""
    if (
        program not in PROGRAMS
        and not _SHELL_SYNTAX.search(command)
        and not CRON_FIELD.match(program)
    ):
        # Most of a runbook: a plain command of a program the portal does not know. The same
        # answer as the full reading below, without it.
        return Recognition(command, action=program).refuse(
            f"The portal has no operation for {program}."
        )
    try:
        words = split_words(command)
    except Unbalanced as exc:
        return Recognition(command).refuse(f"It cannot be read: {exc}.")
    if not words:
        return Recognition(command).refuse("An empty command.")
    return _recognize_words(command, words)
