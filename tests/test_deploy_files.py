"""The deployment files checked against the code they start.

Dockerfile, docker-compose.yml and deploy/kubernetes/ must only start processes the project
ships, probe URLs that exist, set environment variables that opsportal/settings.py reads,
and keep the shape production relies on (one beat, probes on web, migrations before the
processes, non-root). Each test gathers every problem it finds and reports them together.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = KUBERNETES_DIR / "kustomization.yaml"
SETTINGS_FILE = ROOT / "opsportal" / "settings.py"

IMAGE_NAME = "opsportal"
NAMESPACE = "opsportal"
WSGI_APPLICATION = "opsportal.wsgi:application"
CELERY_APP = "opsportal"
# The Secret must carry these, and only as placeholders.
SECRET_NAMES = {"SECRET_KEY", "DATABASE_URL", "FIELD_ENCRYPTION_KEY"}
PLACEHOLDER = "REPLACE_ME"

SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", "<", ">>"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
URL_PATTERN = re.compile(r"https?://[^\s'\"]+")


# --- Loading -----------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    services = compose().get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml has no services"
    return services


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES_DIR.glob("*.yaml") if path != KUSTOMIZATION)


@cache
def manifests() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every object of every manifest, with the file it came from."""
    objects = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                objects.append((path.name, document))
    return tuple(objects)


def objects_of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {
        document["metadata"]["name"]: document
        for _, document in manifests()
        if document.get("kind") == kind
    }


def is_our_image(image: str) -> bool:
    """`registry.example.com/opsportal:1.2` is ours; `postgres:16` is not."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == IMAGE_NAME


def our_compose_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if "build" in service or is_our_image(str(service.get("image", "")))
    }


@dataclass(frozen=True)
class Workload:
    """A Kubernetes object that runs pods: its file, the object and its pod spec."""

    file: str
    document: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.document["kind"])

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])

    @property
    def template(self) -> dict[str, Any]:
        return dict(self.document["spec"]["template"])

    @property
    def pod_spec(self) -> dict[str, Any]:
        return dict(self.template["spec"])

    @property
    def where(self) -> str:
        return f"{self.file} {self.kind}/{self.name}"

    def containers(self) -> Iterator[dict[str, Any]]:
        yield from self.pod_spec.get("initContainers", [])
        yield from self.pod_spec.get("containers", [])

    def our_containers(self) -> Iterator[dict[str, Any]]:
        for container in self.containers():
            if is_our_image(str(container.get("image", ""))):
                yield container


def workloads() -> list[Workload]:
    return [
        Workload(file, document)
        for file, document in manifests()
        if document.get("kind") in POD_TEMPLATE_KINDS
    ]


def deployment(name: str) -> Workload:
    found = [w for w in workloads() if w.kind == "Deployment" and w.name == name]
    assert len(found) == 1, f"expected one Deployment {name}, found {len(found)}"
    return found[0]


def main_container(workload: Workload) -> dict[str, Any]:
    containers = workload.pod_spec.get("containers", [])
    assert len(containers) == 1, f"{workload.where}: expected one container"
    return dict(containers[0])


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    stage: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw_line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "Dockerfile ends inside a continued line"
    return tuple(instructions)


def runtime_stage() -> list[Instruction]:
    """The last stage: the image that runs."""
    instructions = dockerfile()
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def copy_sources(instruction: Instruction) -> tuple[list[str], str | None]:
    """The sources of a COPY or ADD, and the stage it copies from (None: the context)."""
    if instruction.arguments.startswith("["):
        words = [str(word) for word in json.loads(instruction.arguments)]
        flags: list[str] = []
    else:
        all_words = shlex.split(instruction.arguments)
        flags = [word for word in all_words if word.startswith("--")]
        words = [word for word in all_words if not word.startswith("--")]
    from_stage = next((flag.split("=", 1)[1] for flag in flags if flag.startswith("--from=")), None)
    return words[:-1], from_stage


def dockerfile_user_id() -> int:
    users = [i.arguments for i in runtime_stage() if i.keyword == "USER"]
    assert users, "the Dockerfile never leaves root: add USER with a numeric id"
    user = users[-1].split(":", 1)[0]
    assert user.isdigit(), f"USER {users[-1]}: use a numeric id so Kubernetes can check it"
    return int(user)


# --- Commands ----------------------------------------------------------------------------


def argv_of(command: str | list[Any]) -> list[str]:
    """The program and arguments of a compose, Dockerfile or Kubernetes command."""
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words[:1] == ["CMD"]:
        words = words[1:]
    elif words[:1] == ["CMD-SHELL"]:
        words = shlex.split(" ".join(words[1:]))
    if len(words) == 3 and words[0] in SHELLS and words[1] == "-c":
        words = shlex.split(words[2])
    if words[:1] == ["exec"]:
        words = words[1:]
    return words


def split_click_options(
    command: Any, args: list[str], *, stop_at_positional: bool
) -> tuple[dict[str, str | None], list[str], list[str]]:
    """Options given to a click command, its positional words, and unknown options."""
    import click

    known: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                known[opt] = param
    given: dict[str, str | None] = {}
    positionals: list[str] = []
    unknown: list[str] = []
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if not word.startswith("-") or word == "-":
            positionals.append(word)
            if stop_at_positional:
                positionals.extend(args[index:])
                break
            continue
        name, has_value, value = word.partition("=")
        option = known.get(name)
        if option is None:
            unknown.append(name)
            continue
        if option.is_flag or option.count:
            given[option.name or name] = None
        elif has_value:
            given[option.name or name] = value
        else:
            given[option.name or name] = args[index] if index < len(args) else None
            index += 1
    return given, positionals, unknown


def gunicorn_problems(args: list[str], where: str) -> list[str]:
    from gunicorn.config import Config

    try:
        parsed, unknown = Config(prog="gunicorn").parser().parse_known_args(args)
    except SystemExit:
        return [f"{where}: gunicorn cannot parse {args}"]
    problems = [f"{where}: gunicorn has no option {word}" for word in unknown]
    if parsed.args != [WSGI_APPLICATION]:
        problems.append(f"{where}: gunicorn must serve {WSGI_APPLICATION}, not {parsed.args}")
        return problems
    module_name, attribute = WSGI_APPLICATION.split(":")
    if importlib.util.find_spec(module_name) is None:
        problems.append(f"{where}: {module_name} is not importable")
    elif not callable(getattr(importlib.import_module(module_name), attribute, None)):
        problems.append(f"{where}: {WSGI_APPLICATION} is not a WSGI callable")
    return problems


def celery_problems(args: list[str], where: str) -> list[str]:
    from celery import Celery
    from celery.app.utils import find_app
    from celery.bin.celery import celery as celery_cli
    from celery.worker.control import Panel

    options, rest, unknown = split_click_options(celery_cli, args, stop_at_positional=True)
    problems = [f"{where}: celery has no global option {name}" for name in unknown]
    if options.get("app") != CELERY_APP:
        problems.append(f"{where}: celery must run with -A {CELERY_APP}")
    elif importlib.util.find_spec(f"{CELERY_APP}.celery") is None:
        problems.append(f"{where}: {CELERY_APP}.celery is not importable")
    elif not isinstance(find_app(CELERY_APP), Celery):
        problems.append(f"{where}: -A {CELERY_APP} does not find a Celery application")
    if not rest or rest[0] not in ("worker", "beat", "inspect"):
        return [*problems, f"{where}: celery must run worker, beat or inspect, not {rest}"]
    subcommand = celery_cli.commands[rest[0]]
    _, positionals, unknown = split_click_options(subcommand, rest[1:], stop_at_positional=False)
    problems += [f"{where}: celery {rest[0]} has no option {name}" for name in unknown]
    if rest[0] == "inspect":
        if not positionals:
            problems.append(f"{where}: celery inspect needs a command")
        elif getattr(Panel.meta.get(positionals[0]), "type", None) != "inspect":
            problems.append(f"{where}: celery inspect has no command {positionals[0]}")
    elif positionals:
        problems.append(f"{where}: celery {rest[0]} takes no arguments {positionals}")
    return problems


def manage_py_problems(args: list[str], where: str) -> list[str]:
    from django.core.management import CommandError, get_commands, load_command_class

    if not (ROOT / "manage.py").is_file():
        return [f"{where}: manage.py is not in the repository"]
    if not any("manage.py" in copy_sources(i)[0] for i in runtime_stage() if i.keyword == "COPY"):
        return [f"{where}: the Dockerfile does not copy manage.py into the image"]
    if len(args) < 2:
        return [f"{where}: manage.py needs a command"]
    name, options = args[1], args[2:]
    commands = get_commands()
    if name not in commands:
        return [f"{where}: `{name}` is not a Django management command"]
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    try:
        parser.parse_args(options)
    except CommandError as exc:
        return [f"{where}: manage.py {name} {options}: {exc}"]
    return []


def python_problems(args: list[str], where: str) -> list[str]:
    if args[:1] == ["manage.py"]:
        return manage_py_problems(args, where)
    if args[:1] == ["-c"] and len(args) >= 2:
        try:
            compile(args[1], where, "exec")
        except SyntaxError as exc:
            return [f"{where}: python -c code does not compile: {exc}"]
        return []
    return [f"{where}: python may only run manage.py or -c code, not {args}"]


def shipped_command_problems(command: str | list[Any] | None, where: str) -> list[str]:
    """Why this command is not one of the programs the project ships (empty: it is)."""
    if not command:
        return [f"{where}: no command"]
    argv = argv_of(command)
    if not argv:
        return [f"{where}: no command"]
    if SHELL_OPERATORS & set(argv):
        return [f"{where}: run one program, not a shell pipeline: {argv}"]
    program, *args = argv
    if program == "gunicorn":
        return gunicorn_problems(args, where)
    if program == "celery":
        return celery_problems(args, where)
    if program in ("python", "python3"):
        return python_problems(args, where)
    return [f"{where}: `{program}` is not a program OpsPortal ships"]


def container_command(container: dict[str, Any]) -> list[Any]:
    return [*container.get("command", []), *container.get("args", [])]


def gunicorn_port(argv: list[str]) -> int | None:
    for index, word in enumerate(argv):
        bind = word.partition("=")[2] if word.startswith(("--bind=", "-b=")) else None
        if word in ("--bind", "-b") and index + 1 < len(argv):
            bind = argv[index + 1]
        if bind:
            return int(bind.rsplit(":", 1)[1])
    return None


# --- Environment -------------------------------------------------------------------------


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        pairs = (str(item).partition("=") for item in environment)
        return {name: value for name, _, value in pairs}
    return {str(name): str(value) for name, value in environment.items()}


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    values = {str(k): str(v) for k, v in (secret.get("stringData") or {}).items()}
    for key, value in (secret.get("data") or {}).items():
        values[str(key)] = base64.b64decode(value).decode()
    return values


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """What the container's environment would hold (missing references are another test's)."""
    config_maps = objects_of_kind("ConfigMap")
    secrets = objects_of_kind("Secret")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = config_maps.get(source["configMapRef"]["name"], {})
            environment.update({str(k): str(v) for k, v in (config_map.get("data") or {}).items()})
        if "secretRef" in source:
            environment.update(secret_values(secrets.get(source["secretRef"]["name"], {})))
    for variable in container.get("env", []):
        environment[str(variable["name"])] = str(variable.get("value", ""))
    return environment


def settings_reads(name: str) -> bool:
    source = SETTINGS_FILE.read_text(encoding="utf-8")
    return f'"{name}"' in source or f"'{name}'" in source


# --- HTTP probes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """An HTTP request a health check makes, and the environment of the server it asks."""

    where: str
    path: str
    port: int | str
    host: str | None
    server_ports: dict[str | int, int]
    allowed_hosts: list[str]


def compose_probes() -> list[Probe]:
    probes = []
    for name, service in our_compose_services().items():
        test = (service.get("healthcheck") or {}).get("test")
        if not test:
            continue
        environment = compose_environment(service)
        port = gunicorn_port(argv_of(service.get("command", [])))
        for url in URL_PATTERN.findall(" ".join(argv_of(test))):
            parts = urlsplit(url)
            probes.append(
                Probe(
                    where=f"docker-compose.yml services.{name}.healthcheck",
                    path=parts.path,
                    port=parts.port or 80,
                    host=parts.hostname,
                    server_ports={port: port} if port else {},
                    allowed_hosts=environment.get("ALLOWED_HOSTS", "").split(","),
                )
            )
    return probes


def kubernetes_probes() -> list[Probe]:
    probes = []
    for workload in workloads():
        for container in workload.our_containers():
            ports: dict[str | int, int] = {}
            for port in container.get("ports", []):
                ports[int(port["containerPort"])] = int(port["containerPort"])
                if "name" in port:
                    ports[str(port["name"])] = int(port["containerPort"])
            environment = container_environment(container)
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = (container.get(kind) or {}).get("httpGet")
                if not http:
                    continue
                headers = {h["name"].lower(): h["value"] for h in http.get("httpHeaders", [])}
                probes.append(
                    Probe(
                        where=f"{workload.where} container {container['name']} {kind}",
                        path=str(http.get("path", "/")),
                        port=http["port"],
                        host=headers.get("host"),
                        server_ports=ports,
                        allowed_hosts=environment.get("ALLOWED_HOSTS", "").split(","),
                    )
                )
    return probes


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps this path (or a folder holding it) out of the context."""
    if not DOCKERIGNORE.exists():
        return False
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        for candidate in candidates:
            if fnmatchcase(candidate, pattern) or (
                pattern.startswith("**/") and fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:])
            ):
                excluded = not negated
    return excluded


# --- The files parse and hang together ---------------------------------------------------


def test_it_parses_every_deploy_file() -> None:
    assert our_compose_services(), "docker-compose.yml runs no OpsPortal service"
    assert manifest_files(), "deploy/kubernetes/ has no manifests"
    problems = [
        f"{file}: an object without apiVersion, kind and metadata.name"
        for file, document in manifests()
        if not (document.get("apiVersion") and document.get("kind"))
        or not (document.get("metadata") or {}).get("name")
    ]
    assert not problems, "\n".join(problems)


def test_it_lists_every_manifest_in_the_kustomization() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    resources = kustomization.get("resources", [])
    missing = [resource for resource in resources if not (KUBERNETES_DIR / resource).is_file()]
    assert not missing, f"kustomization.yaml lists files that do not exist: {missing}"
    assert sorted(resources) == sorted(path.name for path in manifest_files())
    assert kustomization.get("namespace") == NAMESPACE
    image_names = [image["name"] for image in kustomization.get("images", [])]
    assert image_names == [IMAGE_NAME], "kustomization.yaml must set the OpsPortal image"


def test_it_keeps_every_object_in_the_namespace() -> None:
    assert list(objects_of_kind("Namespace")) == [NAMESPACE]
    problems = [
        f"{file} {document['kind']}/{document['metadata']['name']} is not in {NAMESPACE}"
        for file, document in manifests()
        if document["kind"] not in CLUSTER_SCOPED_KINDS
        and document["metadata"].get("namespace") != NAMESPACE
    ]
    assert not problems, "\n".join(problems)


def test_it_selects_its_own_pods() -> None:
    problems = []
    for workload in workloads():
        if workload.kind == "Job":
            continue
        selector = workload.document["spec"]["selector"]["matchLabels"]
        labels = workload.template["metadata"]["labels"]
        if not selector or any(labels.get(key) != value for key, value in selector.items()):
            problems.append(f"{workload.where}: selector {selector} misses its pods {labels}")
    assert not problems, "\n".join(problems)


def test_it_references_config_maps_and_secrets_that_exist() -> None:
    config_maps = objects_of_kind("ConfigMap")
    secrets = objects_of_kind("Secret")
    problems = []
    for workload in workloads():
        for container in workload.our_containers():
            where = f"{workload.where} container {container['name']}"
            sources = container.get("envFrom", [])
            used_maps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
            used_secrets = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
            if not used_maps or not used_secrets:
                problems.append(f"{where}: needs envFrom both the ConfigMap and the Secret")
            problems += [f"{where}: no ConfigMap {n}" for n in used_maps if n not in config_maps]
            problems += [f"{where}: no Secret {n}" for n in used_secrets if n not in secrets]
    assert not problems, "\n".join(problems)


# --- Only shipped programs run -----------------------------------------------------------


def test_it_runs_only_shipped_commands_in_compose() -> None:
    problems = []
    for name, service in our_compose_services().items():
        where = f"docker-compose.yml services.{name}"
        problems += shipped_command_problems(service.get("command"), f"{where}.command")
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            problems += shipped_command_problems(test, f"{where}.healthcheck")
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile_name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            if not (context / (dockerfile_name or "Dockerfile")).is_file():
                problems.append(f"{where}.build: no Dockerfile at {context}")
    assert not problems, "\n".join(problems)


def test_it_runs_only_shipped_commands_in_kubernetes() -> None:
    problems = []
    for workload in workloads():
        for container in workload.containers():
            where = f"{workload.where} container {container.get('name')}"
            if not is_our_image(str(container.get("image", ""))):
                problems.append(f"{where}: runs {container.get('image')}, not the OpsPortal image")
                continue
            problems += shipped_command_problems(container_command(container), where)
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                exec_probe = (container.get(kind) or {}).get("exec")
                if exec_probe:
                    problems += shipped_command_problems(exec_probe["command"], f"{where} {kind}")
    assert not problems, "\n".join(problems)


def test_it_builds_the_image_from_files_in_the_repo() -> None:
    from django.conf import settings

    problems = []
    copied_to_runtime: set[str] = set()
    for instruction in dockerfile():
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        sources, from_stage = copy_sources(instruction)
        if from_stage is not None:
            continue
        for source in sources:
            relative = source.removeprefix("./").rstrip("/")
            if not (ROOT / relative).exists():
                problems.append(f"Dockerfile: COPY {source}: not in the repository")
            elif dockerignore_excludes(relative):
                problems.append(f"Dockerfile: COPY {source}: .dockerignore leaves it out")
            if instruction.stage == runtime_stage()[0].stage:
                copied_to_runtime.add(relative)
    # Templates and static files are read from BASE_DIR at run time, not from the package.
    base_dir = Path(settings.BASE_DIR)
    folders = [Path(d) for t in settings.TEMPLATES for d in cast(list[str], t.get("DIRS", []))]
    folders += [Path(d) for d in settings.STATICFILES_DIRS]
    for folder in folders:
        relative = folder.relative_to(base_dir).as_posix()
        if relative not in copied_to_runtime:
            problems.append(f"Dockerfile: the image needs {relative}/ (settings use it)")
    packages = ("opsportal", "apps", "manage.py")
    problems += [
        f"Dockerfile: copy {p} into the image" for p in packages if p not in copied_to_runtime
    ]
    assert not problems, "\n".join(problems)


def test_it_starts_a_shipped_command_by_default() -> None:
    commands = [i.arguments for i in runtime_stage() if i.keyword == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    assert commands[-1].startswith("["), "use CMD's exec form so gunicorn gets the signals"
    command = json.loads(commands[-1])
    problems = shipped_command_problems(command, "Dockerfile CMD")
    assert not problems, "\n".join(problems)
    exposed = {
        int(p.split("/")[0])
        for i in runtime_stage()
        if i.keyword == "EXPOSE"
        for p in i.arguments.split()
    }
    assert gunicorn_port(command) in exposed, "the Dockerfile must EXPOSE the port gunicorn binds"


def test_it_keeps_the_beat_schedule_where_the_image_lets_beat_write() -> None:
    workdir = PurePosixPath([i.arguments for i in runtime_stage() if i.keyword == "WORKDIR"][-1])
    runs = " ".join(i.arguments for i in runtime_stage() if i.keyword == "RUN")
    commands = [argv_of(s.get("command", [])) for s in our_compose_services().values()]
    commands += [argv_of(container_command(c)) for w in workloads() for c in w.our_containers()]
    schedules = [
        argv[index + 1]
        for argv in commands
        if "beat" in argv
        for index, word in enumerate(argv[:-1])
        if word in ("--schedule", "-s")
    ]
    assert schedules, "beat must be given --schedule inside the image's var/ folder"
    for schedule in schedules:
        folder = PurePosixPath(schedule).parent
        assert folder.is_relative_to(workdir), f"{schedule} is outside {workdir}"
        assert f"mkdir -p {folder}" in runs, f"the Dockerfile must create {folder}"
        assert re.search(rf"chown[^;]*{dockerfile_user_id()}", runs), "var/ must be the app's"


# --- Probes hit real URLs ----------------------------------------------------------------


def test_it_probes_urls_that_resolve() -> None:
    from django.urls import Resolver404, resolve

    probes = compose_probes() + kubernetes_probes()
    problems = []
    for probe in probes:
        try:
            resolve(probe.path)
        except Resolver404:
            problems.append(f"{probe.where}: {probe.path} is not a URL of opsportal.urls")
        if probe.port not in probe.server_ports:
            problems.append(f"{probe.where}: port {probe.port} is not the server's")
    assert not problems, "\n".join(problems)
    web_paths = [p.path for p in compose_probes() if p.where.endswith(".web.healthcheck")]
    assert web_paths == ["/health/ready"], "compose's web needs a healthcheck on /health/ready"


def test_it_probes_with_a_host_django_allows() -> None:
    from django.http.request import validate_host

    problems = []
    for probe in compose_probes() + kubernetes_probes():
        # Without a Host header the kubelet sends the pod's IP, which Django rejects (400).
        if probe.host is None and "*" not in probe.allowed_hosts:
            problems.append(f"{probe.where}: send a Host header that ALLOWED_HOSTS lists")
        elif probe.host is not None and not validate_host(probe.host, probe.allowed_hosts):
            problems.append(f"{probe.where}: Host {probe.host} not in {probe.allowed_hosts}")
    assert not problems, "\n".join(problems)


def test_it_probes_paths_exempt_from_the_https_redirect() -> None:
    from django.conf import settings

    # Probes speak plain HTTP to the pod: a redirect to https:// would fail them.
    exempt = [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]
    problems = [
        f"{probe.where}: {probe.path} is not in SECURE_REDIRECT_EXEMPT"
        for probe in compose_probes() + kubernetes_probes()
        if not any(pattern.search(probe.path.lstrip("/")) for pattern in exempt)
    ]
    assert not problems, "\n".join(problems)


# --- Environment in sync with the settings -----------------------------------------------


def test_it_sets_only_environment_variables_the_settings_read() -> None:
    places: dict[str, list[str]] = {}
    for service_name, service in our_compose_services().items():
        for name in compose_environment(service):
            places.setdefault(name, []).append(f"docker-compose.yml services.{service_name}")
    for file, document in manifests():
        where = f"{file} {document['kind']}/{document['metadata']['name']}"
        if document["kind"] == "ConfigMap":
            for name in document.get("data") or {}:
                places.setdefault(name, []).append(where)
        if document["kind"] == "Secret":
            for name in secret_values(document):
                places.setdefault(name, []).append(where)
    for workload in workloads():
        for container in workload.our_containers():
            for variable in container.get("env", []):
                where = f"{workload.where} container {container['name']}"
                places.setdefault(variable["name"], []).append(where)
    assert places, "the deploy files set no environment at all"
    problems = [
        f"{name} is not read by opsportal/settings.py (set in {', '.join(wheres)})"
        for name, wheres in sorted(places.items())
        # NAME_FILE is the settings' generic way to read NAME from a mounted secret.
        if not settings_reads(name) and not settings_reads(name.removesuffix("_FILE"))
    ]
    assert not problems, "\n".join(problems)


def test_it_keeps_real_secrets_out_of_the_deploy_files() -> None:
    secrets = objects_of_kind("Secret")
    assert secrets, "deploy/kubernetes/ needs a Secret"
    problems = []
    for name, secret in secrets.items():
        values = secret_values(secret)
        problems += [f"Secret/{name} lacks {key}" for key in sorted(SECRET_NAMES - set(values))]
        problems += [
            f"Secret/{name}: {key} must be a {PLACEHOLDER} placeholder"
            for key, value in values.items()
            if PLACEHOLDER not in value
        ]
    for service_name, service in our_compose_services().items():
        environment = compose_environment(service)
        for key in sorted(SECRET_NAMES - {"DATABASE_URL"}):
            if not environment.get(key, "").startswith("${"):
                problems.append(f"docker-compose.yml {service_name}: take {key} from .env")
    assert not problems, "\n".join(problems)


# --- The shape production relies on ------------------------------------------------------


def test_it_runs_web_worker_and_beat_as_separate_deployments() -> None:
    expected = {
        "opsportal-web": ["gunicorn"],
        "opsportal-worker": ["celery", "worker"],
        "opsportal-beat": ["celery", "beat"],
    }
    for name, words in expected.items():
        argv = argv_of(container_command(main_container(deployment(name))))
        assert argv[:1] == words[:1] and set(words) <= set(argv), f"{name} runs {argv}"
    assert deployment("opsportal-web").document["spec"]["replicas"] >= 2
    assert deployment("opsportal-worker").document["spec"]["replicas"] >= 1


def test_it_runs_exactly_one_beat() -> None:
    beat = deployment("opsportal-beat").document["spec"]
    assert beat["replicas"] == 1
    # Recreate: the old beat stops before the new one starts, never two at once.
    assert beat["strategy"]["type"] == "Recreate"
    beats = [
        name
        for name, service in our_compose_services().items()
        if "beat" in argv_of(service.get("command", []))
    ]
    assert beats == ["beat"], f"compose must run one beat service, not {beats}"
    replicas = (compose_services()["beat"].get("deploy") or {}).get("replicas", 1)
    assert replicas == 1


def test_it_gives_web_both_probes_on_its_port() -> None:
    web = main_container(deployment("opsportal-web"))
    port = gunicorn_port(argv_of(container_command(web)))
    assert port in [p["containerPort"] for p in web.get("ports", [])]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_it_routes_the_service_to_the_web_port() -> None:
    services = objects_of_kind("Service")
    web_service = services.get("opsportal-web")
    assert web_service is not None, "deploy/kubernetes/ needs a Service opsportal-web"
    web = deployment("opsportal-web")
    labels = web.template["metadata"]["labels"]
    selector = web_service["spec"]["selector"]
    assert selector and all(labels.get(key) == value for key, value in selector.items())
    ports = {p.get("name"): p["containerPort"] for p in main_container(web).get("ports", [])}
    for service_port in web_service["spec"]["ports"]:
        target = service_port.get("targetPort", service_port["port"])
        assert target in ports or target in ports.values(), f"targetPort {target} is no port"


def test_it_runs_migrations_once_before_the_processes_in_compose() -> None:
    services = compose_services()
    migrate = services.get("migrate")
    assert migrate is not None, "compose needs a one-shot migrate service"
    assert argv_of(migrate["command"])[:3] == ["python", "manage.py", "migrate"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    problems = []
    for name in ("postgres", "redis"):
        test = (services[name].get("healthcheck") or {}).get("test")
        if not test:
            problems.append(f"docker-compose.yml {name}: needs a healthcheck")
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dependency: {} for dependency in depends_on}
        problems += [
            f"docker-compose.yml {name}: depends on unknown service {dependency}"
            for dependency in depends_on
            if dependency not in services
        ]
        if name in ("web", "worker", "beat"):
            condition = (depends_on.get("migrate") or {}).get("condition")
            if condition != "service_completed_successfully":
                problems.append(f"docker-compose.yml {name}: must wait for migrate to succeed")
        if name in our_compose_services():
            for dependency in ("postgres",) if name == "migrate" else ("postgres", "redis"):
                if (depends_on.get(dependency) or {}).get("condition") != "service_healthy":
                    problems.append(f"docker-compose.yml {name}: wait for {dependency} healthy")
    assert not problems, "\n".join(problems)


def test_it_runs_migrations_in_a_kubernetes_job() -> None:
    jobs = [w for w in workloads() if w.kind == "Job"]
    migrations = [
        job
        for job in jobs
        if argv_of(container_command(main_container(job)))[:3] == ["python", "manage.py", "migrate"]
    ]
    assert len(migrations) == 1, "deploy/kubernetes/ needs one Job running migrate"
    assert migrations[0].pod_spec["restartPolicy"] in ("Never", "OnFailure")
    # The long-running pods wait for it rather than run new code on an old schema.
    for name in ("opsportal-web", "opsportal-worker", "opsportal-beat"):
        init = deployment(name).pod_spec.get("initContainers", [])
        waits = [argv_of(container_command(c)) for c in init]
        assert ["python", "manage.py", "migrate", "--check"] in waits, f"{name}: wait for it"


def test_it_runs_as_the_images_non_root_user() -> None:
    user_id = dockerfile_user_id()
    assert user_id != 0
    problems = []
    for workload in workloads():
        pod_context = workload.pod_spec.get("securityContext") or {}
        if pod_context.get("runAsNonRoot") is not True:
            problems.append(f"{workload.where}: set runAsNonRoot")
        if pod_context.get("runAsUser") != user_id:
            problems.append(f"{workload.where}: runAsUser must be the image's user {user_id}")
        if (pod_context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{workload.where}: use the RuntimeDefault seccomp profile")
        for container in workload.containers():
            context = container.get("securityContext") or {}
            where = f"{workload.where} container {container['name']}"
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: set allowPrivilegeEscalation: false")
            if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: drop ALL capabilities")
    assert not problems, "\n".join(problems)


def test_it_sets_resource_requests_and_limits() -> None:
    problems = [
        f"{workload.where} container {container['name']}: needs resources.{bound}.{resource}"
        for workload in workloads()
        for container in workload.containers()
        for bound in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in ((container.get("resources") or {}).get(bound) or {})
    ]
    assert not problems, "\n".join(problems)
