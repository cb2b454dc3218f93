"""An emulator of the part of the Kubernetes REST API that the portal uses, served over HTTP.

No API server can run on this machine, so tests and the demo point the unmodified official
`kubernetes` client at this emulator instead. It serves Deployments (with the scale
subresource), the ReplicaSets and Pods a deployment controller would make for them, pod logs
and `/version`, with the JSON shapes, Status errors and patch semantics of a real cluster.

The deployment controller is imitated lazily: every read or write first advances the
simulation to the present, so pods become ready as time passes without a background thread.
Rollouts surge one pod at a time and never go below the desired number of ready pods (as
maxSurge 1, maxUnavailable 0 would), which keeps the timings simple to reason about in tests:
each new pod becomes ready `ready_seconds` after it was created, and an image whose reference
contains "fail" never becomes ready at all.

It also serves the "application" each deployment runs (`/apps/{ns}/{deployment}/health...`),
so health probes have something that follows the rollouts.

Run `python -m tests.support.kube_emulator --demo` for the demo cluster.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import secrets
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.loopback import Served

JSON = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# The deployment controller copies a deployment's annotations onto its ReplicaSets except these.
NOT_COPIED_TO_REPLICASETS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
USER = "system:serviceaccount:ops:portal"
# Kubernetes builds generated names from this alphabet (no vowels, no look-alike digits).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NODES = ("node-1", "node-2", "node-3")
MAX_SURGE = 1


class DemoDeployment(TypedDict):
    """One deployment of the demo cluster."""

    namespace: str
    name: str
    image: str
    replicas: int
    container: str


def _demo(namespace: str, name: str, image: str, replicas: int, container: str) -> DemoDeployment:
    return DemoDeployment(
        namespace=namespace, name=name, image=image, replicas=replicas, container=container
    )


_REGISTRY = "registry.example.com"
DEMO_DEPLOYMENTS: tuple[DemoDeployment, ...] = (
    _demo("rosterhub", "rosterhub-api", f"{_REGISTRY}/rosterhub/api:2.14.0", 3, "api"),
    _demo("rosterhub", "rosterhub-worker", f"{_REGISTRY}/rosterhub/worker:2.14.0", 2, "worker"),
    _demo("rosterhub-staging", "rosterhub-api", f"{_REGISTRY}/rosterhub/api:2.14.0", 2, "api"),
    _demo(
        "rosterhub-staging", "rosterhub-worker", f"{_REGISTRY}/rosterhub/worker:2.14.0", 2, "worker"
    ),
    _demo("maintainuk", "maintainuk-web", f"{_REGISTRY}/maintainuk/web:5.3.1", 2, "web"),
    _demo("maintainuk-staging", "maintainuk-web", f"{_REGISTRY}/maintainuk/web:5.3.1", 2, "web"),
)


# --- Errors: the Status objects an API server answers with -------------------------------------


class ApiError(Exception):
    """An error answered as a `Status` object, with the reason and code Kubernetes would use."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one cause per field, worded like the API server's field errors."""
    listed = [f"{path}: {message}" for path, message in causes]
    summary = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": path}
                for path, message in causes
            ],
        },
    )


def conflict(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": resource},
    )


def patch_rejected(cause: str) -> ApiError:
    # What the API server answers when a JSON patch cannot be applied (a failed `test` too).
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"message": cause}]},
    )


# --- Patches: strategic merge, JSON merge (RFC 7386) and JSON patch (RFC 6902) ------------------

# The patchMergeKey of the list fields a Deployment holds; other lists are replaced whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
}


def strategic_merge(target: JSON, patch: JSON) -> JSON:
    """Apply a strategic merge patch the way the API server does for built-in types."""
    if patch.get("$patch") == "replace":
        return strategic_merge({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue  # ordering and retention hints change nothing this emulator shows
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name, []) if item not in value]
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = strategic_merge(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list) and key in MERGE_KEYS:
            existing = current if isinstance(current, list) else []
            result[key] = _merge_list(existing, value, MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [strategic_merge({}, item) for item in patch if item.get("$patch") != "replace"]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        index = next(
            (i for i, old in enumerate(result) if old.get(merge_key) == item[merge_key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: JSON, operations: Any) -> JSON:
    """RFC 6902 add, remove, replace, move, copy and test."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result: Any = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise bad_request(f"invalid JSON patch operation: {json.dumps(operation)}")
        op, path = operation.get("op"), operation["path"]
        if op == "test":
            if _pointer_get(result, path, op) != operation.get("value"):
                raise patch_rejected(f"testing value {path} failed: test failed")
        elif op == "remove":
            _pointer_remove(result, path)
        elif op in ("add", "replace"):
            if "value" not in operation:
                raise bad_request(f"{op} operation on {path} has no value")
            if op == "replace":
                _pointer_get(result, path, op)  # replace needs the target to exist
            result = _pointer_add(result, path, copy.deepcopy(operation["value"]), op)
        elif op in ("move", "copy"):
            source = operation.get("from", "")
            value = copy.deepcopy(_pointer_get(result, source, op))
            if op == "move":
                _pointer_remove(result, source)
            result = _pointer_add(result, path, value, op)
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return result  # type: ignore[no-any-return]


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"JSON pointer must be empty or start with a '/': {path}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _child(container: Any, token: str, path: str, op: str) -> Any:
    if isinstance(container, dict) and token in container:
        return container[token]
    if isinstance(container, list) and token.isdigit() and int(token) < len(container):
        return container[int(token)]
    raise patch_rejected(f"{op} operation does not apply: doc is missing path: {path}")


def _pointer_get(document: Any, path: str, op: str) -> Any:
    node = document
    for token in _tokens(path):
        node = _child(node, token, path, op)
    return node


def _pointer_add(document: Any, path: str, value: Any, op: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _pointer_get(document, "/" + "/".join(_escape(t) for t in tokens[:-1]), op)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last == "-":
        parent.append(value)
    elif isinstance(parent, list) and last.isdigit() and int(last) <= len(parent):
        if op == "replace":
            parent[int(last)] = value
        else:
            parent.insert(int(last), value)
    else:
        raise patch_rejected(f"{op} operation does not apply: doc is missing path: {path}")
    return document


def _pointer_remove(document: Any, path: str) -> None:
    tokens = _tokens(path)
    if not tokens:
        raise patch_rejected("remove operation does not apply: cannot remove the root")
    parent = _pointer_get(document, "/" + "/".join(_escape(t) for t in tokens[:-1]), "remove")
    _child(parent, tokens[-1], path, "remove")
    if isinstance(parent, dict):
        del parent[tokens[-1]]
    else:
        del parent[int(tokens[-1])]


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# --- Small helpers ------------------------------------------------------------------------------


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_millis(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def generated_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(length))


def without_hash(template: JSON) -> JSON:
    stripped = copy.deepcopy(template)
    labels = stripped.get("metadata", {}).get("labels", {})
    labels.pop(HASH_LABEL, None)
    return stripped


def template_hash(template: JSON) -> str:
    digest = hashlib.sha256(json.dumps(without_hash(template), sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def image_fails(image: str) -> bool:
    return "fail" in image


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def parse_selector(text: str) -> list[tuple[str, str, set[str]]]:
    """A label selector as (key, operator, values): =, !=, in, notin, exists, !exists."""
    requirements: list[tuple[str, str, set[str]]] = []
    for part in re.split(r",(?![^()]*\))", text.strip()):
        part = part.strip()
        if not part:
            continue
        if match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part):
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            requirements.append((match.group(1), match.group(2), values))
        elif match := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", part):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), operator, {match.group(3)}))
        elif match := re.fullmatch(r"(!?)([\w./-]+)", part):
            requirements.append((match.group(2), "!exists" if match.group(1) else "exists", set()))
        else:
            raise bad_request(f"unable to parse requirement: {part}")
    return requirements


def selector_matches(requirements: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    for key, operator, values in requirements:
        present = key in labels
        if operator in ("=", "in") and not (present and labels[key] in values):
            return False
        if operator in ("!=", "notin") and present and labels[key] in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
    return True


def with_defaults(spec: JSON) -> JSON:
    """The defaults the API server fills into a Deployment spec and its pod template."""
    spec = copy.deepcopy(spec)
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("securityContext", {}),
        ("schedulerName", "default-scheduler"),
    ):
        pod.setdefault(key, value)
    for container in pod.get("containers", []):
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        latest = image_tag(image) == "latest" and "@" not in image
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
    return spec


def validate_deployment(name: str, spec: Any) -> list[tuple[str, str]]:
    """Field errors as (path, message), worded like the API server's validation."""
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    errors: list[tuple[str, str]] = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        errors.append(("spec.replicas", f"Invalid value: {json.dumps(replicas)}: must be an int"))
    elif replicas < 0:
        errors.append(
            ("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")
        )
    match_labels = spec.get("selector", {}).get("matchLabels")
    if not isinstance(match_labels, dict) or not match_labels:
        errors.append(("spec.selector", "Required value"))
    template = spec.get("template", {})
    labels = template.get("metadata", {}).get("labels") or {}
    if isinstance(match_labels, dict) and any(labels.get(k) != v for k, v in match_labels.items()):
        errors.append(
            (
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
            )
        )
    containers = template.get("spec", {}).get("containers")
    if not isinstance(containers, list) or not containers:
        errors.append(("spec.template.spec.containers", "Required value"))
        return errors
    seen: set[str] = set()
    for index, container in enumerate(containers):
        path = f"spec.template.spec.containers[{index}]"
        if not isinstance(container, dict) or not container.get("name"):
            errors.append((f"{path}.name", "Required value"))
            continue
        if container["name"] in seen:
            errors.append((f"{path}.name", f'Duplicate value: "{container["name"]}"'))
        seen.add(container["name"])
        image = container.get("image")
        if not isinstance(image, str) or not image.strip():
            errors.append((f"{path}.image", "Required value"))
        for env_index, variable in enumerate(container.get("env") or []):
            if not isinstance(variable, dict) or not variable.get("name"):
                errors.append((f"{path}.env[{env_index}].name", "Required value"))
    return errors


def max_unavailable(spec: JSON) -> int:
    value = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable", "25%")
    replicas = int(spec.get("replicas", 1))
    if isinstance(value, str) and value.endswith("%"):
        return replicas * int(value[:-1]) // 100
    return int(value)


# --- The objects held: deployments, their ReplicaSets and pods ---------------------------------


@dataclass
class Pod:
    """A pod: when it becomes ready is decided when it is created (never, for a failing image)."""

    name: str
    uid: str
    node: str
    ip: str
    created: float
    ready_at: float | None
    resource_version: str

    def is_ready(self, now: float) -> bool:
        return self.ready_at is not None and self.ready_at <= now


@dataclass
class ReplicaSet:
    """A ReplicaSet; its spec.replicas is always the number of pods it has."""

    name: str
    uid: str
    template: JSON
    revision: int
    created: float
    annotations: dict[str, str]
    resource_version: str
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Condition:
    """A deployment condition, with its times kept as floats until rendered."""

    type: str
    status: str
    reason: str
    message: str
    last_update: float
    last_transition: float


@dataclass
class Deployment:
    """A Deployment: its manifest, its ReplicaSets and the controller's view of its status."""

    namespace: str
    name: str
    uid: str
    created: float
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: JSON
    resource_version: str
    generation: int = 1
    replica_sets: list[ReplicaSet] = field(default_factory=list)
    current: ReplicaSet | None = None
    conditions: dict[str, Condition] = field(default_factory=dict)
    last_counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # replicas, updated, ready, available
    clock: float = 0.0

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 1))


class ObjectStore:
    """Everything the emulated cluster holds, one lock for all of it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self._resource_version = 1000
        self._pod_count = 0

    def next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    @property
    def resource_version(self) -> str:
        return str(self._resource_version)

    def next_pod_placement(self) -> tuple[str, str]:
        self._pod_count += 1
        n = self._pod_count
        return NODES[n % len(NODES)], f"10.244.{n // 250}.{n % 250 + 2}"

    def in_namespace(self, namespace: str) -> list[Deployment]:
        return [d for (ns, _), d in sorted(self.deployments.items()) if ns == namespace]

    def reset(self) -> None:
        with self.lock:
            self.deployments.clear()


# --- The deployment controller, imitated --------------------------------------------------------


class DeploymentController:
    """Moves deployments towards their spec as time passes, the way kube-controller-manager does.

    `sync` replays what happened since the last look: each pod becoming ready is an event, and
    so is a progress deadline running out, so timestamps in conditions are the moments things
    happened, not the moments someone asked.
    """

    def __init__(self, store: ObjectStore, ready_seconds: float) -> None:
        self.store = store
        self.ready_seconds = ready_seconds

    def sync(self, deployment: Deployment, now: float) -> None:
        moment = max(deployment.clock, 0.0)
        while True:
            self.reconcile(deployment, moment)
            upcoming = self._next_event(deployment, moment)
            if upcoming is None or upcoming > now:
                break
            moment = upcoming
        deployment.clock = max(deployment.clock, now)

    def roll_to_template(self, deployment: Deployment, now: float) -> None:
        """Point the deployment at the ReplicaSet for its template, reusing one if it matches."""
        template = without_hash(deployment.spec["template"])
        reused = next(
            (rs for rs in deployment.replica_sets if without_hash(rs.template) == template), None
        )
        others = [rs.revision for rs in deployment.replica_sets if rs is not reused]
        revision = max(others, default=0) + 1
        if reused is None:
            pod_hash = template_hash(template)
            labelled = copy.deepcopy(template)
            labelled.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
            reused = ReplicaSet(
                name=f"{deployment.name}-{pod_hash}",
                uid=str(uuid.uuid4()),
                template=labelled,
                revision=revision,
                created=now,
                annotations={},
                resource_version=self.store.next_resource_version(),
            )
            deployment.replica_sets.append(reused)
            self._set_condition(
                deployment,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{reused.name}"',
                now,
            )
        elif reused.revision != revision:
            # Rolling back renumbers the old ReplicaSet as the newest revision, as on a cluster.
            history = [h for h in reused.annotations.get(REVISION_HISTORY, "").split(",") if h]
            reused.annotations[REVISION_HISTORY] = ",".join([*history, str(reused.revision)])
            reused.revision = revision
            reused.resource_version = self.store.next_resource_version()
        deployment.current = reused
        self.copy_annotations(deployment)

    def copy_annotations(self, deployment: Deployment) -> None:
        new = deployment.current
        if new is None:
            return
        kept = {k: v for k, v in new.annotations.items() if k == REVISION_HISTORY}
        copied = {
            k: v for k, v in deployment.annotations.items() if k not in NOT_COPIED_TO_REPLICASETS
        }
        new.annotations = {
            **copied,
            **kept,
            REVISION: str(new.revision),
            DESIRED_REPLICAS: str(deployment.replicas),
            MAX_REPLICAS: str(deployment.replicas + MAX_SURGE),
        }
        deployment.annotations[REVISION] = str(new.revision)

    def reconcile(self, deployment: Deployment, now: float) -> None:
        new = deployment.current
        if new is None:
            return
        desired = deployment.replicas
        olds = sorted(
            (rs for rs in deployment.replica_sets if rs is not new), key=lambda r: r.created
        )
        # Old pods that are not ready serve nobody: they go first, as unhealthy replicas do.
        for rs in olds:
            rs.pods = [pod for pod in rs.pods if pod.is_ready(now)]
        if len(new.pods) > desired:
            keep = sorted(new.pods, key=lambda p: (not p.is_ready(now), p.created))[:desired]
            new.pods = [pod for pod in new.pods if any(pod is k for k in keep)]
        # Never fewer ready pods than desired: an old pod goes once a new one has replaced it.
        excess = self._ready(deployment, now) - desired
        for rs in olds:
            while excess > 0 and rs.pods:
                rs.pods.pop(0)
                excess -= 1
        old_pods = sum(len(rs.pods) for rs in olds)
        failing = any(image_fails(c.get("image", "")) for c in new.template["spec"]["containers"])
        if old_pods:
            while len(new.pods) < desired and old_pods + len(new.pods) < desired + MAX_SURGE:
                surge_ready = None if failing else now + self.ready_seconds
                new.pods.append(self._new_pod(new, now, surge_ready))
        else:
            pending = [p.ready_at for p in new.pods if p.ready_at and p.ready_at > now]
            ready_at = max(pending, default=now)
            for _ in range(desired - len(new.pods)):
                ready_at += self.ready_seconds
                new.pods.append(self._new_pod(new, now, None if failing else ready_at))
        self._forget_old_revisions(deployment, olds)
        self._update_conditions(deployment, now)

    def _new_pod(self, rs: ReplicaSet, now: float, ready_at: float | None) -> Pod:
        node, ip = self.store.next_pod_placement()
        return Pod(
            name=f"{rs.name}-{generated_suffix()}",
            uid=str(uuid.uuid4()),
            node=node,
            ip=ip,
            created=now,
            ready_at=ready_at,
            resource_version=self.store.next_resource_version(),
        )

    def _forget_old_revisions(self, deployment: Deployment, olds: list[ReplicaSet]) -> None:
        limit = int(deployment.spec.get("revisionHistoryLimit", 10))
        idle = sorted((rs for rs in olds if not rs.pods), key=lambda rs: rs.revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            deployment.replica_sets.remove(rs)

    def _ready(self, deployment: Deployment, now: float) -> int:
        return sum(p.is_ready(now) for rs in deployment.replica_sets for p in rs.pods)

    def counts(self, deployment: Deployment, now: float) -> tuple[int, int, int, int]:
        total = sum(len(rs.pods) for rs in deployment.replica_sets)
        updated = len(deployment.current.pods) if deployment.current else 0
        ready = self._ready(deployment, now)
        return total, updated, ready, ready

    def _update_conditions(self, deployment: Deployment, now: float) -> None:
        """syncRolloutStatus of the deployment controller, condition by condition."""
        before = deployment.last_counts
        total, updated, ready, available = self.counts(deployment, now)
        deployment.last_counts = (total, updated, ready, available)
        desired = deployment.replicas
        if available >= desired - max_unavailable(deployment.spec):
            self._set_condition(
                deployment,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
        else:
            self._set_condition(
                deployment,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            )
        current = deployment.conditions.get("Progressing")
        name = deployment.current.name if deployment.current else deployment.name
        if total == updated and current and current.reason == "NewReplicaSetAvailable":
            return  # a finished rollout: scaling alone does not count as progress
        if updated == desired and total == desired and available == desired:
            self._set_condition(
                deployment,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
                now,
            )
        elif (
            updated > before[1]
            or total - updated < before[0] - before[1]
            or ready > before[2]
            or available > before[3]
        ):
            transition = current.last_transition if current and current.status == "True" else now
            deployment.conditions["Progressing"] = Condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{name}" is progressing.',
                now,
                transition,
            )
        elif (deadline := self._deadline(deployment)) is not None and now >= deadline:
            self._set_condition(
                deployment,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}" has timed out progressing.',
                now,
            )

    def _deadline(self, deployment: Deployment) -> float | None:
        """When the rollout times out if nothing moves before then; None when it cannot."""
        current = deployment.conditions.get("Progressing")
        if current is None or current.reason in (
            "NewReplicaSetAvailable",
            "ProgressDeadlineExceeded",
        ):
            return None
        return current.last_update + float(deployment.spec.get("progressDeadlineSeconds", 600))

    def _set_condition(
        self, deployment: Deployment, kind: str, status: str, reason: str, message: str, now: float
    ) -> None:
        current = deployment.conditions.get(kind)
        if current and current.status == status and current.reason == reason:
            return
        transition = current.last_transition if current and current.status == status else now
        deployment.conditions[kind] = Condition(kind, status, reason, message, now, transition)

    def _next_event(self, deployment: Deployment, now: float) -> float | None:
        moments = [
            pod.ready_at
            for rs in deployment.replica_sets
            for pod in rs.pods
            if pod.ready_at is not None and pod.ready_at > now
        ]
        deadline = self._deadline(deployment)
        if deadline is not None:
            moments.append(max(deadline, now + 1e-6))
        return min(moments, default=None)


# --- The API: REST semantics, independent of HTTP -----------------------------------------------


class KubeApi:
    """The resources served, as functions from a request's parts to JSON (or an ApiError)."""

    def __init__(self, store: ObjectStore, controller: DeploymentController) -> None:
        self.store = store
        self.controller = controller

    # Deployments

    def _deployment(self, namespace: str, name: str, now: float) -> Deployment:
        deployment = self.store.deployments.get((namespace, name))
        if deployment is None:
            raise not_found("deployments", "apps", name)
        self.controller.sync(deployment, now)
        return deployment

    def list_deployments(self, namespace: str, selector: str) -> JSON:
        requirements = parse_selector(selector)
        with self.store.lock:
            now = time.time()
            items: list[JSON] = []
            for deployment in self.store.in_namespace(namespace):
                if selector_matches(requirements, deployment.labels):
                    self.controller.sync(deployment, now)
                    items.append(self.render_deployment(deployment, now, listed=True))
            return self._list("DeploymentList", "apps/v1", items)

    def get_deployment(self, namespace: str, name: str) -> JSON:
        with self.store.lock:
            now = time.time()
            return self.render_deployment(self._deployment(namespace, name, now), now)

    def create_deployment(self, namespace: str, body: Any) -> JSON:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise bad_request("Object 'metadata' is missing in the request body")
        name = body["metadata"].get("name")
        if body["metadata"].get("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if not name:
            raise invalid("Deployment", "apps", "", [("metadata.name", "Required value")])
        with self.store.lock:
            if (namespace, name) in self.store.deployments:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'deployments.apps "{name}" already exists',
                    {"name": name, "group": "apps", "kind": "deployments"},
                )
            spec = with_defaults(body.get("spec") or {})
            if errors := validate_deployment(name, spec):
                raise invalid("Deployment", "apps", name, errors)
            now = time.time()
            deployment = Deployment(
                namespace=namespace,
                name=name,
                uid=str(uuid.uuid4()),
                created=now,
                labels=dict(body["metadata"].get("labels") or {}),
                annotations=dict(body["metadata"].get("annotations") or {}),
                spec=spec,
                resource_version=self.store.next_resource_version(),
                clock=now,
            )
            self.store.deployments[(namespace, name)] = deployment
            self.controller.roll_to_template(deployment, now)
            self.controller.reconcile(deployment, now)
            return self.render_deployment(deployment, now)

    def patch_deployment(self, namespace: str, name: str, content_type: str, patch: Any) -> JSON:
        with self.store.lock:
            now = time.time()
            deployment = self._deployment(namespace, name, now)
            patched = apply_patch(self.render_deployment(deployment, now), content_type, patch)
            self._write(deployment, patched, now)
            return self.render_deployment(deployment, now)

    def replace_deployment(self, namespace: str, name: str, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a Deployment object")
        with self.store.lock:
            now = time.time()
            deployment = self._deployment(namespace, name, now)
            self._write(deployment, body, now)
            return self.render_deployment(deployment, now)

    def _write(self, deployment: Deployment, wanted: JSON, now: float) -> None:
        """Store a new version of a deployment: validation, generation, revision, rollout."""
        metadata = wanted.get("metadata") or {}
        version = metadata.get("resourceVersion")
        if version and version != deployment.resource_version:
            raise conflict("deployments", "apps", deployment.name)
        if metadata.get("name", deployment.name) != deployment.name:
            raise bad_request("the name of the object does not match the name on the URL")
        spec = with_defaults(wanted.get("spec") or {})
        errors = validate_deployment(deployment.name, spec)
        if not errors and spec.get("selector") != deployment.spec.get("selector"):
            errors = [("spec.selector", "Invalid value: the selector: field is immutable")]
        if errors:
            raise invalid("Deployment", "apps", deployment.name, errors)
        template_changed = without_hash(spec["template"]) != without_hash(
            deployment.spec["template"]
        )
        if spec != deployment.spec:
            deployment.generation += 1
        deployment.spec = spec
        deployment.labels = dict(metadata.get("labels") or {})
        deployment.annotations = dict(metadata.get("annotations") or {})
        deployment.resource_version = self.store.next_resource_version()
        if template_changed:
            self.controller.roll_to_template(deployment, now)
        else:
            self.controller.copy_annotations(deployment)
        self.controller.reconcile(deployment, now)

    # The scale subresource

    def get_scale(self, namespace: str, name: str) -> JSON:
        with self.store.lock:
            now = time.time()
            return self.render_scale(self._deployment(namespace, name, now), now)

    def write_scale(self, namespace: str, name: str, content_type: str | None, body: Any) -> JSON:
        with self.store.lock:
            now = time.time()
            deployment = self._deployment(namespace, name, now)
            scale = self.render_scale(deployment, now)
            wanted = body if content_type is None else apply_patch(scale, content_type, body)
            if not isinstance(wanted, dict):
                raise bad_request("the body of the request must be a Scale object")
            version = (wanted.get("metadata") or {}).get("resourceVersion")
            if version and version != deployment.resource_version:
                raise conflict("deployments", "apps", name)
            replicas = (wanted.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                message = (
                    f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0"
                )
                raise invalid("Scale", "autoscaling", name, [("spec.replicas", message)])
            manifest = self.render_deployment(deployment, now)
            manifest["spec"]["replicas"] = replicas
            manifest["metadata"].pop("resourceVersion")
            self._write(deployment, manifest, now)
            return self.render_scale(deployment, now)

    # ReplicaSets and pods

    def list_replicasets(self, namespace: str, selector: str) -> JSON:
        requirements = parse_selector(selector)
        with self.store.lock:
            now = time.time()
            items: list[JSON] = []
            for deployment in self.store.in_namespace(namespace):
                self.controller.sync(deployment, now)
                for rs in deployment.replica_sets:
                    if selector_matches(requirements, rs.template["metadata"]["labels"]):
                        items.append(self.render_replicaset(deployment, rs, now))
            return self._list("ReplicaSetList", "apps/v1", items)

    def list_pods(self, namespace: str, selector: str) -> JSON:
        requirements = parse_selector(selector)
        with self.store.lock:
            now = time.time()
            items: list[JSON] = []
            for deployment in self.store.in_namespace(namespace):
                self.controller.sync(deployment, now)
                for rs in deployment.replica_sets:
                    if selector_matches(requirements, rs.template["metadata"]["labels"]):
                        items.extend(self.render_pod(deployment, rs, p, now) for p in rs.pods)
            return self._list("PodList", "v1", items)

    def _find_pod(self, namespace: str, name: str, now: float) -> tuple[ReplicaSet, Pod]:
        for deployment in self.store.in_namespace(namespace):
            self.controller.sync(deployment, now)
            for rs in deployment.replica_sets:
                for pod in rs.pods:
                    if pod.name == name:
                        return rs, pod
        raise not_found("pods", "", name)

    def pod_log(
        self, namespace: str, name: str, container: str | None, tail: int | None, stamps: bool
    ) -> str:
        with self.store.lock:
            now = time.time()
            rs, pod = self._find_pod(namespace, name, now)
            containers = {c["name"]: c for c in rs.template["spec"]["containers"]}
            if container is None:
                if len(containers) > 1:
                    raise bad_request(
                        f"a container name must be specified for pod {name}, "
                        f"choose one of: [{' '.join(containers)}]"
                    )
                container = next(iter(containers))
            if container not in containers:
                raise bad_request(f"container {container} is not valid for pod {name}")
            image = containers[container]["image"]
            if not image_fails(image) and self._creating(pod, now):
                raise bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: '
                    "ContainerCreating"
                )
            lines = self._log_lines(pod, container, image, now)
        if tail is not None and tail >= 0:
            lines = lines[len(lines) - tail :] if tail else []
        return "".join(
            (f"{rfc3339_millis(moment)} " if stamps else "") + text + "\n" for moment, text in lines
        )

    def _log_lines(
        self, pod: Pod, container: str, image: str, now: float
    ) -> list[tuple[float, str]]:
        def line(moment: float, level: str, text: str) -> tuple[float, str]:
            return moment, f"{rfc3339_millis(moment)} {level:<5} [{pod.name}] {text}"

        if image_fails(image):
            # The container crashes at once; the log is that of its latest attempt.
            start = pod.created + self._restarts(pod, now) * self._crash_period()
            return [
                line(start, "INFO", f"starting {container} {image}"),
                line(start + 0.01, "ERROR", f"{image}: configuration check failed: DATABASE_URL"),
                line(start + 0.02, "ERROR", "exiting with status 1"),
            ]
        lines = [
            line(pod.created, "INFO", f"starting {container} {image}"),
            line(pod.created + 0.01, "INFO", "listening on :8080"),
        ]
        requests = ("GET /health/ready 200", "GET /api/items 200", "POST /api/items 201")
        first = max(0, int(now - pod.created) - 500)  # the newest 500 requests are plenty
        for second in range(first + 1, int(now - pod.created) + 1):
            moment = pod.created + second
            took = 2 + (second * 7) % 40
            lines.append(line(moment, "INFO", f"{requests[second % 3]} {took}ms image={image}"))
        return lines

    def _creating(self, pod: Pod, now: float) -> bool:
        """A healthy pod spends the first half of its way to ready pulling and starting."""
        return not pod.is_ready(now) and now - pod.created < self.controller.ready_seconds / 2

    def _crash_period(self) -> float:
        return max(2 * self.controller.ready_seconds, 0.2)

    def _restarts(self, pod: Pod, now: float) -> int:
        return int((now - pod.created) / self._crash_period())

    # The application each deployment runs

    def app_health(self, namespace: str, name: str, probe: str) -> tuple[int, JSON]:
        with self.store.lock:
            now = time.time()
            deployment = self._deployment(namespace, name, now)
            ready = self.controller.counts(deployment, now)[2]
            image = deployment.spec["template"]["spec"]["containers"][0]["image"]
        if probe == "live":
            return 200, {"status": "ok"}
        if probe == "ready":
            return (200, {"status": "ok"}) if ready else (503, {"status": "down"})
        state = "down" if not ready else "ok" if ready >= deployment.replicas else "degraded"
        checks = {
            "database": {"status": "ok", "latency_ms": 3},
            "redis": {"status": "ok", "latency_ms": 1},
        }
        body = {"status": state, "version": image_tag(image), "checks": checks}
        return (503 if state == "down" else 200), body

    # Rendering

    def _list(self, kind: str, api_version: str, items: list[JSON]) -> JSON:
        return {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": self.store.resource_version},
            "items": items,
        }

    def render_deployment(self, deployment: Deployment, now: float, listed: bool = False) -> JSON:
        total, updated, ready, available = self.controller.counts(deployment, now)
        status: JSON = {"observedGeneration": deployment.generation}
        for key, value in (
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", max(0, total - available)),
        ):
            if value:  # the API server leaves zero counts out
                status[key] = value
        status["conditions"] = [
            {
                "type": c.type,
                "status": c.status,
                "lastUpdateTime": rfc3339(c.last_update),
                "lastTransitionTime": rfc3339(c.last_transition),
                "reason": c.reason,
                "message": c.message,
            }
            for kind in ("Available", "Progressing")
            if (c := deployment.conditions.get(kind))
        ]
        metadata: JSON = {
            "name": deployment.name,
            "namespace": deployment.namespace,
            "uid": deployment.uid,
            "resourceVersion": deployment.resource_version,
            "generation": deployment.generation,
            "creationTimestamp": rfc3339(deployment.created),
        }
        if deployment.labels:
            metadata["labels"] = dict(deployment.labels)
        if deployment.annotations:
            metadata["annotations"] = dict(deployment.annotations)
        body: JSON = {
            "metadata": metadata,
            "spec": copy.deepcopy(deployment.spec),
            "status": status,
        }
        return body if listed else {"kind": "Deployment", "apiVersion": "apps/v1", **body}

    def render_scale(self, deployment: Deployment, now: float) -> JSON:
        selector = deployment.spec["selector"]["matchLabels"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": deployment.name,
                "namespace": deployment.namespace,
                "uid": deployment.uid,
                "resourceVersion": deployment.resource_version,
                "creationTimestamp": rfc3339(deployment.created),
            },
            "spec": {"replicas": deployment.replicas},
            "status": {
                "replicas": self.controller.counts(deployment, now)[0],
                "selector": selector_string(selector),
            },
        }

    def render_replicaset(self, deployment: Deployment, rs: ReplicaSet, now: float) -> JSON:
        ready = sum(pod.is_ready(now) for pod in rs.pods)
        labels = rs.template["metadata"]["labels"]
        status: JSON = {"replicas": len(rs.pods), "observedGeneration": 1}
        if rs.pods:
            status["fullyLabeledReplicas"] = len(rs.pods)
        if ready:
            status.update(readyReplicas=ready, availableReplicas=ready)
        return {
            "metadata": {
                "name": rs.name,
                "namespace": deployment.namespace,
                "uid": rs.uid,
                "resourceVersion": rs.resource_version,
                "generation": 1,
                "creationTimestamp": rfc3339(rs.created),
                "labels": dict(labels),
                "annotations": dict(rs.annotations),
                "ownerReferences": [
                    self._owner("apps/v1", "Deployment", deployment.name, deployment.uid)
                ],
            },
            "spec": {
                "replicas": len(rs.pods),
                "selector": {
                    "matchLabels": {
                        **deployment.spec["selector"]["matchLabels"],
                        HASH_LABEL: labels[HASH_LABEL],
                    }
                },
                "template": copy.deepcopy(rs.template),
            },
            "status": status,
        }

    @staticmethod
    def _owner(api_version: str, kind: str, name: str, uid: str) -> JSON:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def render_pod(self, deployment: Deployment, rs: ReplicaSet, pod: Pod, now: float) -> JSON:
        template = rs.template
        statuses = [self._container_status(c, pod, now) for c in template["spec"]["containers"]]
        ready = all(s["ready"] for s in statuses)
        creating = any(
            s["state"].get("waiting", {}).get("reason") == "ContainerCreating" for s in statuses
        )
        unready = [s["name"] for s in statuses if not s["ready"]]
        readiness: JSON = {"status": "True" if ready else "False"}
        if unready:
            readiness.update(
                reason="ContainersNotReady",
                message=f"containers with unready status: [{' '.join(unready)}]",
            )
        became = pod.ready_at if ready and pod.ready_at is not None else pod.created
        conditions = [
            {"type": "Initialized", "status": "True", "lastTransitionTime": rfc3339(pod.created)},
            {"type": "Ready", **readiness, "lastTransitionTime": rfc3339(became)},
            {"type": "ContainersReady", **readiness, "lastTransitionTime": rfc3339(became)},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(pod.created)},
        ]
        metadata: JSON = {
            "name": pod.name,
            "generateName": f"{rs.name}-",
            "namespace": deployment.namespace,
            "uid": pod.uid,
            "resourceVersion": pod.resource_version,
            "creationTimestamp": rfc3339(pod.created),
            "labels": dict(template["metadata"]["labels"]),
            "ownerReferences": [self._owner("apps/v1", "ReplicaSet", rs.name, rs.uid)],
        }
        if annotations := template["metadata"].get("annotations"):
            metadata["annotations"] = dict(annotations)
        return {
            "metadata": metadata,
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": pod.node},
            "status": {
                "phase": "Pending" if creating else "Running",
                "conditions": conditions,
                "hostIP": "192.168.10." + pod.node.rsplit("-", 1)[1],
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
                "startTime": rfc3339(pod.created),
                "containerStatuses": statuses,
                "qosClass": "BestEffort",
            },
        }

    def _container_status(self, container: JSON, pod: Pod, now: float) -> JSON:
        image = container["image"]
        status: JSON = {
            "name": container["name"],
            "image": image,
            "imageID": f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "restartCount": 0,
            "ready": False,
            "started": False,
            "lastState": {},
        }
        started = rfc3339(pod.created)
        container_id = f"containerd://{hashlib.sha256(pod.uid.encode()).hexdigest()}"
        if image_fails(image):
            restarts = self._restarts(pod, now)
            status["restartCount"] = restarts
            status["containerID"] = container_id
            if restarts == 0:
                status["state"] = {"running": {"startedAt": started}}
                return status
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 10s restarting failed container={container['name']} "
                    f"pod={pod.name}_{pod.uid}",
                }
            }
            status["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": started,
                    "finishedAt": started,
                    "containerID": container_id,
                }
            }
            return status
        if self._creating(pod, now):
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
            return status
        status.update(
            containerID=container_id,
            started=True,
            ready=pod.is_ready(now),
            state={"running": {"startedAt": started}},
        )
        return status


def apply_patch(document: JSON, content_type: str, patch: Any) -> JSON:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json-patch+json":
        return json_patch(document, patch)
    if not isinstance(patch, dict):
        raise bad_request(f"the body of a {media} patch must be a JSON object")
    if media == "application/merge-patch+json":
        return merge_patch(document, patch)  # type: ignore[no-any-return]
    if media == "application/strategic-merge-patch+json":
        return strategic_merge(document, patch)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json",
    )


# --- HTTP ---------------------------------------------------------------------------------------

NS = r"/namespaces/(?P<namespace>[a-z0-9.-]+)"
# (pattern, what a 403 names: resource, API group, subresource; methods and their handler)
ROUTES: tuple[tuple[re.Pattern[str], tuple[str, str, str], dict[str, str]], ...] = tuple(
    (re.compile(pattern), forbidden_as, methods)
    for pattern, forbidden_as, methods in (
        (r"/version/?", ("", "", ""), {"GET": "version"}),
        (
            rf"/apis/apps/v1{NS}/deployments/?",
            ("deployments", "apps", ""),
            {"GET": "list_deployments", "POST": "create_deployment"},
        ),
        (
            rf"/apis/apps/v1{NS}/deployments/(?P<name>[^/]+)",
            ("deployments", "apps", ""),
            {"GET": "get_deployment", "PATCH": "patch_deployment", "PUT": "replace_deployment"},
        ),
        (
            rf"/apis/apps/v1{NS}/deployments/(?P<name>[^/]+)/scale",
            ("deployments", "apps", "scale"),
            {"GET": "get_scale", "PATCH": "write_scale", "PUT": "write_scale"},
        ),
        (rf"/apis/apps/v1{NS}/replicasets/?", ("replicasets", "apps", ""), {"GET": "list_rs"}),
        (rf"/api/v1{NS}/pods/?", ("pods", "", ""), {"GET": "list_pods"}),
        (rf"/api/v1{NS}/pods/(?P<name>[^/]+)/log", ("pods", "", "log"), {"GET": "pod_log"}),
    )
)
APP_ROUTE = re.compile(
    r"/apps/(?P<namespace>[^/]+)/(?P<name>[^/]+)/health(?:/(?P<probe>live|ready))?/?"
)
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update"}


class KubeApiHandler(BaseHTTPRequestHandler):
    """Turns HTTP requests into KubeApi calls: authentication, routing, bodies, Status errors."""

    server: EmulatorHTTPServer
    server_version = "kube-emulator"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            if match := APP_ROUTE.fullmatch(path):
                self._serve_app(match)
                return
            for pattern, forbidden_as, methods in ROUTES:
                if match := pattern.fullmatch(path):
                    self._authenticate(match, forbidden_as)
                    if self.command not in methods:
                        raise ApiError(
                            405,
                            "MethodNotAllowed",
                            "the server does not allow this method on the requested resource",
                        )
                    getattr(self, "_" + methods[self.command])(**match.groupdict())
                    return
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        except ApiError as error:
            self._send_json(error.code, error.status())
        except Exception as error:  # a bug or an input shape nobody foresaw: answer, like k8s
            super().log_message("internal error: %r", error)
            self._send_json(
                500, ApiError(500, "InternalError", f"Internal error occurred: {error}").status()
            )

    def _authenticate(self, match: re.Match[str], forbidden_as: tuple[str, str, str]) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        emulator = self.server.emulator
        if scheme.lower() != "bearer" or token not in (emulator.token, emulator.forbidden_token):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        resource, group, subresource = forbidden_as
        if token != emulator.forbidden_token or not resource:
            return  # /version is public information, as system:public-info-viewer allows
        name = match.groupdict().get("name")
        verb = VERBS.get(self.command, self.command.lower())
        if verb == "get" and name is None:
            verb = "list"
        what = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
        full = f"{resource}/{subresource}" if subresource else resource
        raise ApiError(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{USER}" cannot {verb} resource "{full}" in API group '
            f'"{group}" in the namespace "{match["namespace"]}"',
            {"name": name or "", "group": group, "kind": resource},
        )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError as error:
            raise bad_request(f"error decoding request body: {error}") from None

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json")

    def _send(self, code: int, content_type: str, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_json(self, code: int, body: JSON) -> None:
        self._send(code, "application/json", json.dumps(body).encode())

    # Endpoints

    def _version(self) -> None:
        self._send_json(
            200,
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-emulator",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            },
        )

    def _list_deployments(self, namespace: str) -> None:
        selector = self.query.get("labelSelector", "")
        self._send_json(200, self.server.api.list_deployments(namespace, selector))

    def _create_deployment(self, namespace: str) -> None:
        self._send_json(201, self.server.api.create_deployment(namespace, self._body()))

    def _get_deployment(self, namespace: str, name: str) -> None:
        self._send_json(200, self.server.api.get_deployment(namespace, name))

    def _patch_deployment(self, namespace: str, name: str) -> None:
        body = self._body()
        api = self.server.api
        self._send_json(200, api.patch_deployment(namespace, name, self._content_type(), body))

    def _replace_deployment(self, namespace: str, name: str) -> None:
        self._send_json(200, self.server.api.replace_deployment(namespace, name, self._body()))

    def _get_scale(self, namespace: str, name: str) -> None:
        self._send_json(200, self.server.api.get_scale(namespace, name))

    def _write_scale(self, namespace: str, name: str) -> None:
        content_type = self._content_type() if self.command == "PATCH" else None
        body = self._body()
        self._send_json(200, self.server.api.write_scale(namespace, name, content_type, body))

    def _list_rs(self, namespace: str) -> None:
        selector = self.query.get("labelSelector", "")
        self._send_json(200, self.server.api.list_replicasets(namespace, selector))

    def _list_pods(self, namespace: str) -> None:
        selector = self.query.get("labelSelector", "")
        self._send_json(200, self.server.api.list_pods(namespace, selector))

    def _pod_log(self, namespace: str, name: str) -> None:
        tail = self.query.get("tailLines")
        if tail is not None and not tail.lstrip("-").isdigit():
            raise bad_request(f"tailLines: Invalid value: {tail!r}")
        text = self.server.api.pod_log(
            namespace,
            name,
            self.query.get("container") or None,
            int(tail) if tail is not None else None,
            self.query.get("timestamps") == "true",
        )
        self._send(200, "text/plain", text.encode())

    def _serve_app(self, match: re.Match[str]) -> None:
        if self.command != "GET":
            raise ApiError(405, "MethodNotAllowed", "only GET is served here")
        probe = match["probe"] or "full"
        code, body = self.server.api.app_health(match["namespace"], match["name"], probe)
        self._send_json(code, body)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The HTTP server, holding what the handlers need."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: KubeEmulator, verbose: bool) -> None:
        super().__init__(address, KubeApiHandler)
        self.emulator = emulator
        self.api = emulator.api
        self.verbose = verbose


# --- The public face ----------------------------------------------------------------------------


class KubeEmulator:
    """A cluster to point the official client at: `KubeEmulator().start()`, then `.kubeconfig()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ready_seconds: float = 0.3,
        token: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.forbidden_token = secrets.token_urlsafe(24)
        self.store = ObjectStore()
        self.controller = DeploymentController(self.store, ready_seconds)
        self.api = KubeApi(self.store, self.controller)
        self._verbose = verbose
        self._served: Served | None = None

    def start(self) -> KubeEmulator:
        server = EmulatorHTTPServer((self.host, self.port), self, self._verbose)
        self._served = Served(server, "kube-emulator")
        self.port = self._served.port
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kubeconfig(self, token: str | None = None, namespace: str = "default") -> str:
        """A kubeconfig for this cluster with one context, "emulator"."""
        return kubeconfig_for(self.url, token or self.token, namespace)

    def add_deployment(
        self,
        namespace: str,
        name: str,
        image: str,
        replicas: int = 2,
        container: str = "app",
        progress_deadline_seconds: int = 600,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Create a deployment that has already rolled out: revision 1, every pod ready."""
        labels = labels or {"app": name}
        spec: JSON = {
            "name": container,
            "image": image,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        }
        if env:
            spec["env"] = [{"name": key, "value": value} for key, value in env.items()]
        self.api.create_deployment(
            namespace,
            {
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "replicas": replicas,
                    "progressDeadlineSeconds": progress_deadline_seconds,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {"containers": [spec]},
                    },
                },
            },
        )
        with self.store.lock:
            deployment = self.store.deployments[(namespace, name)]
            for rs in deployment.replica_sets:
                for pod in rs.pods:
                    if pod.ready_at is not None:
                        pod.ready_at = pod.created
            self.controller.reconcile(deployment, deployment.clock)

    def reset(self) -> None:
        self.store.reset()


def kubeconfig_for(url: str, token: str, namespace: str = "default") -> str:
    """A kubeconfig (as JSON, which is YAML too) with one context, "emulator", for a server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "portal", "user": {"token": token}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "portal", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an emulated Kubernetes API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ready-seconds", type=float, default=2.0)
    parser.add_argument("--token", help="the bearer token to accept (random otherwise)")
    parser.add_argument("--demo", action="store_true", help="create the demo deployments")
    parser.add_argument("--kubeconfig-out", type=Path, help="write a kubeconfig for it here")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    emulator = KubeEmulator(args.host, args.port, args.ready_seconds, args.token, args.verbose)
    emulator.start()
    if args.demo:
        for demo in DEMO_DEPLOYMENTS:
            emulator.add_deployment(**demo)
    if args.kubeconfig_out:
        args.kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
        args.kubeconfig_out.touch(mode=0o600)
        args.kubeconfig_out.write_text(emulator.kubeconfig())
    print(f"Kubernetes API emulator listening on {emulator.url}", flush=True)
    if not args.token:
        print(f"Bearer token: {emulator.token}", flush=True)
    if args.kubeconfig_out:
        print(f"Kubeconfig written to {args.kubeconfig_out}", flush=True)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
