"""The portal's Kubernetes driver: the one module that talks to clusters, with the official
`kubernetes` client, doing what the runbooks do with kubectl (`set image`, `rollout undo`,
`rollout restart`, `scale`, `set env`, `logs`, `rollout status`) the way kubectl does it.

Every KubeDeployment has its own ApiClient built from the stored connection; the client's
global configuration is never touched, so many clusters can be used at once from one process.
A kubeconfig stays in memory: the CA goes to the client as data, and only a client certificate
and key (which the TLS library can read from files alone) are written, to a private temporary
directory that is removed when the driver is closed or collected. A kubeconfig that would run
a program or read a file of the portal's server is refused before anything is loaded.

Failures come out as ClusterError, in words for the people at the console.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
REQUEST_TIMEOUT = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"
# kubectl rollout undo keeps these deployment annotations and copies every other one from the
# ReplicaSet it restores (kubectl's annotationsToSkip).
ANNOTATIONS_KEPT_ON_UNDO = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ClusterError(Exception):
    """A failure to show people: the message is in plain words, e.g.
    'Cannot reach the cluster at https://10.0.0.1:6443 (connection refused).',
    'The cluster refused: deployments.apps "api" is forbidden: ... (HTTP 403).',
    'Deployment rosterhub-api was not found in namespace rosterhub.'
    It never holds a token or the kubeconfig. `status` is the HTTP status, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ClusterConnection:
    """How to reach a cluster: a kubeconfig (plaintext YAML) and context, or in-cluster."""

    kubeconfig: str
    context: str = ""  # "" means the kubeconfig's current-context
    in_cluster: bool = False

    def __repr__(self) -> str:
        # The kubeconfig holds credentials: never let it reach a log through a repr.
        return f"ClusterConnection(context={self.context!r}, in_cluster={self.in_cluster})"


@dataclass(frozen=True)
class Condition:
    """One condition of a deployment's status (Available, Progressing, ReplicaFailure)."""

    type: str
    status: str
    reason: str
    message: str
    last_update: datetime | None


@dataclass(frozen=True)
class DeploymentState:
    """A deployment as its cluster reports it, seen through one of its containers."""

    name: str
    namespace: str
    container: str
    image: str
    generation: int
    observed_generation: int
    desired_replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    revision: int
    conditions: tuple[Condition, ...]
    env: dict[str, str] = field(hash=False)  # the literal values; valueFrom entries left out
    progress_deadline_seconds: int
    paused: bool

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True)
class Revision:
    """One entry of `kubectl rollout history`: a ReplicaSet owned by the deployment."""

    number: int
    image: str
    created_at: datetime | None
    replicaset: str
    change_cause: str
    current: bool
    replicas: int


@dataclass(frozen=True)
class PodState:
    """One pod of the deployment, as `kubectl get pods` would summarise it."""

    name: str
    phase: str
    ready: bool
    restarts: int
    started_at: datetime | None
    node: str
    reason: str  # "" or why it is not running well: CrashLoopBackOff, ImagePullBackOff...
    image: str


@dataclass(frozen=True)
class RolloutStatus:
    """What `kubectl rollout status` would say now, and whether it would stop waiting."""

    done: bool
    failed: bool
    message: str
    desired: int
    updated: int
    ready: int
    available: int


# --- Kubeconfigs --------------------------------------------------------------------------------


def _named_entries(config: dict[str, Any], key: str, inner: str) -> dict[str, dict[str, Any]]:
    entries = config.get(key) or []
    if not isinstance(entries, list):
        raise ValueError(f"The kubeconfig's {key} must be a list.")
    named: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError(f"An entry of the kubeconfig's {key} has no name.")
        body = entry.get(inner)
        if not isinstance(body, dict):
            raise ValueError(
                f'The {inner} "{entry["name"]}" in the kubeconfig has no {inner} data.'
            )
        named[str(entry["name"])] = body
    return named


def _load_kubeconfig(text: str) -> dict[str, Any]:
    """The kubeconfig as a dict, checked: see parse_kubeconfig."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"This is not valid YAML{where}.") from None
    if not isinstance(config, dict):
        raise ValueError("This is not a kubeconfig: expected clusters, users and contexts.")
    clusters = _named_entries(config, "clusters", "cluster")
    users = _named_entries(config, "users", "user")
    contexts = _named_entries(config, "contexts", "context")
    if not contexts:
        raise ValueError("The kubeconfig has no contexts.")
    if not clusters:
        raise ValueError("The kubeconfig has no clusters.")
    for name, context in contexts.items():
        if context.get("cluster") not in clusters:
            raise ValueError(
                f'The context "{name}" names the cluster "{context.get("cluster")}", '
                "which the kubeconfig does not define."
            )
        if context.get("user") and context["user"] not in users:
            raise ValueError(
                f'The context "{name}" names the user "{context["user"]}", '
                "which the kubeconfig does not define."
            )
    for name, cluster in clusters.items():
        server = cluster.get("server")
        if not isinstance(server, str) or not server.startswith(("https://", "http://")):
            raise ValueError(f'The cluster "{name}" has no http(s) server address.')
        if cluster.get("certificate-authority"):
            raise ValueError(_file_refused(f'The cluster "{name}"', "certificate-authority"))
    for name, user in users.items():
        if "exec" in user or "auth-provider" in user:
            plugin = "exec" if "exec" in user else "auth-provider"
            raise ValueError(
                f'The user "{name}" runs a program to get its credentials ({plugin} plugin); '
                "the portal never runs a program from a kubeconfig, so this is not allowed. "
                "Use a service account token or a client certificate instead."
            )
        for key in ("tokenFile", "client-certificate", "client-key"):
            if user.get(key):
                raise ValueError(_file_refused(f'The user "{name}"', key))
    current = config.get("current-context")
    if current and current not in contexts:
        raise ValueError(f'The current-context "{current}" is not one of the contexts.')
    return config


def _file_refused(who: str, key: str) -> str:
    return (
        f"{who} refers to a file ({key}), which would be read on the portal's server: "
        f"not allowed. Paste the contents instead ({key}-data)."
    )


def parse_kubeconfig(text: str) -> list[str]:
    """The names of the kubeconfig's contexts, or ValueError saying what is wrong with it.

    Refused too: credentials plugins (exec, auth-provider), which would run a program, and
    references to files, which would read the portal's own server."""
    return list(_named_entries(_load_kubeconfig(text), "contexts", "context"))


def kubeconfig_server(text: str, context: str = "") -> str:
    """The API server address the kubeconfig's context (else its current one) points at: not
    a secret, and how people recognise a cluster. "" when the kubeconfig does not say."""
    config = _load_kubeconfig(text)
    contexts = _named_entries(config, "contexts", "context")
    chosen = contexts.get(context or str(config.get("current-context") or ""))
    if chosen is None:
        return ""
    cluster = _named_entries(config, "clusters", "cluster").get(chosen.get("cluster", ""), {})
    return str(cluster.get("server") or "")


def _decoded(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ClusterError(f"The kubeconfig's {what} is not valid base64.") from None


class _Session:
    """One ApiClient for one connection, the files it needed, and failures put into words."""

    def __init__(self, connection: ClusterConnection) -> None:
        self.connection = connection
        self.server = "the cluster"
        self._client: k8s.ApiClient | None = None
        self._cleanup: weakref.finalize | None = None

    def client(self) -> k8s.ApiClient:
        if self._client is None:
            self._client = self._open()
        return self._client

    def _open(self) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        if self.connection.in_cluster:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException as exc:
                raise ClusterError(
                    f"The portal cannot use its in-cluster service account: {exc}"
                ) from None
        else:
            self._load_kubeconfig(configuration)
        self.server = configuration.host
        # Fail fast: a cluster that cannot be reached is reported within seconds, not retried.
        configuration.retries = 0
        return k8s.ApiClient(configuration)

    def _load_kubeconfig(self, configuration: k8s.Configuration) -> None:
        try:
            config = _load_kubeconfig(self.connection.kubeconfig)
        except ValueError as exc:
            raise ClusterError(f"The kubeconfig cannot be used: {exc}") from None
        contexts = _named_entries(config, "contexts", "context")
        name = self.connection.context or config.get("current-context") or ""
        if name not in contexts:
            raise ClusterError(
                f'The kubeconfig has no context "{name}"; it has: {", ".join(contexts)}.'
                if name
                else "The kubeconfig has no current-context: choose a context."
            )
        cluster = _named_entries(config, "clusters", "cluster")[contexts[name]["cluster"]]
        self.server = str(cluster["server"])
        # TLS material is taken out so that the loader does not write it to temporary files
        # that would outlive this client; it is handed to the client below instead.
        config = copy.deepcopy(config)
        cluster = _named_entries(config, "clusters", "cluster")[contexts[name]["cluster"]]
        user = _named_entries(config, "users", "user").get(contexts[name].get("user", ""), {})
        ca = cluster.pop("certificate-authority-data", None)
        certificate = user.pop("client-certificate-data", None)
        key = user.pop("client-key-data", None)
        try:
            k8s_config.load_kube_config_from_dict(
                config, context=name, client_configuration=configuration, persist_config=False
            )
        except (ConfigException, ValueError, KeyError, TypeError) as exc:
            secrets = [str(v) for v in user.values() if isinstance(v, str)]
            raise ClusterError(
                f"The kubeconfig cannot be used: {_scrub(str(exc), secrets)}"
            ) from None
        if ca:
            configuration.ca_cert_data = _decoded(ca, "certificate-authority-data").decode()
        if certificate and key:
            directory = tempfile.mkdtemp(prefix="opsportal-kube-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, directory, True)
            configuration.cert_file = _private_file(
                directory, "client.crt", _decoded(certificate, "client-certificate-data")
            )
            configuration.key_file = _private_file(
                directory, "client.key", _decoded(key, "client-key-data")
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def call(
        self,
        request: Callable[[k8s.ApiClient], T],
        missing: str | None = None,
        conflict: str | None = None,
    ) -> T:
        """Run one request; `missing` is the message for a 404, `conflict` for a patch whose
        test failed because someone else changed the object first."""
        api = self.client()
        try:
            return request(api)
        except ApiException as exc:
            raise self._refusal(exc, missing, conflict) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(
                f"Cannot reach the cluster at {self.server} ({_network_reason(exc)})."
            ) from None

    def _refusal(
        self, exc: ApiException, missing: str | None, conflict: str | None
    ) -> ClusterError:
        status = exc.status or 0
        body = exc.body if isinstance(exc.body, str) else ""
        if status == 0:
            reason = str(exc.reason or "").strip().splitlines()
            if reason and reason[0] == "SSLError":
                detail = reason[-1] if len(reason) > 1 else "TLS failed"
                return ClusterError(f"Cannot reach the cluster at {self.server} ({detail}).")
            return ClusterError(
                f"The server at {self.server} gave an answer that is not from Kubernetes "
                f"({' '.join(reason) or 'unreadable'})."
            )
        if status == 404 and missing:
            return ClusterError(missing, 404)
        if conflict and (status == 409 or (status == 422 and "test failed" in body)):
            return ClusterError(conflict, status)
        message = _status_message(body) or str(exc.reason or "no reason given")
        if status == 401:
            return ClusterError(
                f"The cluster refused the portal's credentials: {message} (HTTP 401).", 401
            )
        return ClusterError(f"The cluster refused: {message} (HTTP {status}).", status)


def _private_file(directory: str, name: str, content: bytes) -> str:
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    return path


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 6:
            text = text.replace(secret, "…")
    return text


def _status_message(body: str) -> str:
    """The message of a Kubernetes Status object, or "" if the body is not one."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"].strip()
    return ""


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    lowered = text.lower()
    # NewConnectionError is a ConnectTimeoutError to urllib3: look at what it says first.
    for words in ("connection refused", "network is unreachable", "no route to host"):
        if words in lowered:
            return words
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "its name does not resolve"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return text.rsplit("] ", 1)[-1].rsplit(": ", 1)[-1]
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT_SECONDS} s"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {READ_TIMEOUT_SECONDS} s"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS failed: {text.rsplit(': ', 1)[-1]}"
    if isinstance(exc, urllib3.exceptions.ProxyError):
        return "the proxy failed"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "the connection broke off"
    return text.rsplit(": ", 1)[-1] or type(exc).__name__


def server_version(connection: ClusterConnection) -> str:
    """The cluster's version as it reports it (gitVersion, e.g. "v1.31.2")."""
    session = _Session(connection)
    try:
        info = session.call(
            lambda api: k8s.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
        )
    except ClusterError as exc:
        if exc.status == 404:
            raise ClusterError(
                f"The server at {session.server} has no Kubernetes API (/version answered "
                "HTTP 404): check the address.",
                404,
            ) from None
        raise
    finally:
        session.close()
    return str(info.git_version)


# --- Deployments --------------------------------------------------------------------------------


def _count(value: int | None) -> int:
    return int(value or 0)


def _revision_number(annotations: dict[str, str] | None) -> int | None:
    try:
        return int((annotations or {}).get(REVISION, ""))
    except ValueError:
        return None


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _selector(selector: k8s.V1LabelSelector | None) -> str:
    """A LabelSelector as the labelSelector query parameter."""
    if selector is None:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(expression.values or [])
        parts.append(
            {
                "In": f"{expression.key} in ({values})",
                "NotIn": f"{expression.key} notin ({values})",
                "Exists": expression.key,
                "DoesNotExist": f"!{expression.key}",
            }.get(expression.operator, expression.key)
        )
    return ",".join(parts)


def _containers(template: k8s.V1PodTemplateSpec | None) -> list[k8s.V1Container]:
    if template is None or template.spec is None:
        return []
    return list(template.spec.containers)


class KubeDeployment:
    """One deployment of one cluster, and what the runbooks do to it with kubectl.

    Reads and writes go straight to the cluster; nothing is cached between calls. The client
    is made on first use and released by close() (or when the object is collected)."""

    def __init__(
        self, connection: ClusterConnection, namespace: str, name: str, container: str
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.container = container
        self._session = _Session(connection)

    def __enter__(self) -> KubeDeployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"KubeDeployment({self.namespace}/{self.name}, container={self.container})"

    # Requests

    @property
    def _missing(self) -> str:
        return f"Deployment {self.name} was not found in namespace {self.namespace}."

    def _apps(self, api: k8s.ApiClient) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(api)

    def _read(self) -> k8s.V1Deployment:
        return self._session.call(
            lambda api: self._apps(api).read_namespaced_deployment(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            ),
            self._missing,
        )

    def _patch(self, body: Any, content_type: str, conflict: str | None = None) -> k8s.V1Deployment:
        return self._session.call(
            lambda api: self._apps(api).patch_namespaced_deployment(
                self.name,
                self.namespace,
                body,
                _content_type=content_type,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            self._missing,
            conflict,
        )

    def _owned_replicasets(self, deployment: k8s.V1Deployment) -> list[k8s.V1ReplicaSet]:
        """The ReplicaSets this deployment controls, matched by owner uid as kubectl does."""
        selector = _selector(deployment.spec.selector if deployment.spec else None)
        found = self._session.call(
            lambda api: self._apps(api).list_namespaced_replica_set(
                self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
            )
        )
        uid = deployment.metadata.uid if deployment.metadata else None
        return [
            rs
            for rs in found.items
            if any(
                ref.controller and ref.uid == uid
                for ref in (rs.metadata.owner_references if rs.metadata else None) or []
            )
        ]

    def _container(self, deployment: k8s.V1Deployment) -> tuple[int, k8s.V1Container]:
        containers = _containers(deployment.spec.template if deployment.spec else None)
        for index, container in enumerate(containers):
            if container.name == self.container:
                return index, container
        names = ", ".join(c.name for c in containers) or "none"
        raise ClusterError(
            f"Deployment {self.name} in namespace {self.namespace} has no container "
            f"{self.container}; its containers are: {names}."
        )

    def _template(self, template: k8s.V1PodTemplateSpec | None) -> dict[str, Any]:
        """A pod template as the JSON the API holds, without the ReplicaSet's hash label."""
        data: dict[str, Any] = self._session.client().sanitize_for_serialization(template) or {}
        labels = data.get("metadata", {}).get("labels")
        if isinstance(labels, dict):
            labels.pop(HASH_LABEL, None)
        return data

    def _state(self, deployment: k8s.V1Deployment) -> DeploymentState:
        _, container = self._container(deployment)
        spec = deployment.spec
        status = deployment.status or k8s.V1DeploymentStatus()
        metadata = deployment.metadata or k8s.V1ObjectMeta()
        return DeploymentState(
            name=self.name,
            namespace=self.namespace,
            container=self.container,
            image=container.image or "",
            generation=_count(metadata.generation),
            observed_generation=_count(status.observed_generation),
            desired_replicas=_count(spec.replicas if spec else None),
            updated_replicas=_count(status.updated_replicas),
            ready_replicas=_count(status.ready_replicas),
            available_replicas=_count(status.available_replicas),
            revision=_revision_number(metadata.annotations) or 0,
            conditions=tuple(
                Condition(
                    type=c.type or "",
                    status=c.status or "",
                    reason=c.reason or "",
                    message=c.message or "",
                    last_update=_utc(c.last_update_time or c.last_transition_time),
                )
                for c in status.conditions or []
            ),
            env={e.name: e.value or "" for e in container.env or [] if e.value_from is None},
            progress_deadline_seconds=(
                spec.progress_deadline_seconds
                if spec and spec.progress_deadline_seconds is not None
                else 600
            ),
            paused=bool(spec and spec.paused),
        )

    # What the portal asks

    def read(self) -> DeploymentState:
        return self._state(self._read())

    def revisions(self) -> list[Revision]:
        """The rollout history, newest first."""
        deployment = self._read()
        self._container(deployment)
        current = self._template(deployment.spec.template if deployment.spec else None)
        history = [
            self._revision(rs, current)
            for rs in self._owned_replicasets(deployment)
            if rs.metadata and _revision_number(rs.metadata.annotations) is not None
        ]
        return sorted(history, key=lambda revision: revision.number, reverse=True)

    def _revision(self, rs: k8s.V1ReplicaSet, current: dict[str, Any]) -> Revision:
        metadata = rs.metadata or k8s.V1ObjectMeta()
        template = rs.spec.template if rs.spec else None
        image = next((c.image for c in _containers(template) if c.name == self.container), "")
        return Revision(
            number=_revision_number(metadata.annotations) or 0,
            image=image or "",
            created_at=_utc(metadata.creation_timestamp),
            replicaset=metadata.name or "",
            change_cause=(metadata.annotations or {}).get(CHANGE_CAUSE, ""),
            current=self._template(template) == current,
            replicas=_count(rs.status.replicas if rs.status else None),
        )

    def pods(self) -> list[PodState]:
        deployment = self._read()
        self._container(deployment)
        selector = _selector(deployment.spec.selector if deployment.spec else None)
        found = self._session.call(
            lambda api: k8s.CoreV1Api(api).list_namespaced_pod(
                self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return sorted((self._pod(pod) for pod in found.items), key=lambda pod: pod.name)

    def _pod(self, pod: k8s.V1Pod) -> PodState:
        metadata = pod.metadata or k8s.V1ObjectMeta()
        status = pod.status or k8s.V1PodStatus()
        statuses = status.container_statuses or []
        mine = next((s for s in statuses if s.name == self.container), None)
        spec_image = next(
            (
                c.image
                for c in (pod.spec.containers if pod.spec else [])
                if c.name == self.container
            ),
            "",
        )
        reason = ""
        for container_status in sorted(statuses, key=lambda s: s is not mine):
            state = container_status.state
            if state and state.waiting and state.waiting.reason:
                reason = state.waiting.reason
                break
            if state and state.terminated and state.terminated.reason:
                reason = state.terminated.reason
                break
        if metadata.deletion_timestamp is not None:
            reason = "Terminating"
        return PodState(
            name=metadata.name or "",
            phase=status.phase or "Unknown",
            ready=any(c.type == "Ready" and c.status == "True" for c in status.conditions or []),
            restarts=sum(s.restart_count for s in statuses),
            started_at=_utc(status.start_time),
            node=(pod.spec.node_name if pod.spec else None) or "",
            reason=reason or status.reason or "",
            image=(mine.image if mine else spec_image) or "",
        )

    def set_image(self, image: str, change_cause: str = "") -> DeploymentState:
        """`kubectl set image deployment/NAME CONTAINER=IMAGE` (with the change cause that
        `--record` would write)."""
        # A strategic merge on a container name that does not exist would add a container.
        self._container(self._read())
        patch: dict[str, Any] = {
            "spec": {
                "template": {"spec": {"containers": [{"name": self.container, "image": image}]}}
            }
        }
        if change_cause:
            patch["metadata"] = {"annotations": {CHANGE_CAUSE: change_cause}}
        return self._state(self._patch(patch, STRATEGIC_MERGE))

    def undo(self, to_revision: int | None = None) -> Revision:
        """`kubectl rollout undo [--to-revision=N]`. Returns the revision restored, numbered as
        it was in the history: the controller then renumbers it as the newest revision."""
        deployment = self._read()
        self._container(deployment)
        if deployment.spec and deployment.spec.paused:
            raise ClusterError(
                f"Deployment {self.name} is paused: resume it before rolling back "
                f"(kubectl rollout resume deployment/{self.name})."
            )
        numbered: dict[int, k8s.V1ReplicaSet] = {}
        for rs in self._owned_replicasets(deployment):
            number = _revision_number(rs.metadata.annotations if rs.metadata else None)
            if number is not None:
                numbered[number] = rs
        current_number = _revision_number(
            deployment.metadata.annotations if deployment.metadata else None
        )
        if to_revision:
            if to_revision not in numbered:
                raise ClusterError(
                    f"Revision {to_revision} was not found in the history of deployment "
                    f"{self.name}."
                )
            wanted = to_revision
        else:
            newest = current_number if current_number is not None else max(numbered, default=0)
            earlier = [number for number in numbered if number < newest]
            if not earlier:
                raise ClusterError("There is no previous revision to roll back to.")
            wanted = max(earlier)
        chosen = numbered[wanted]
        current = self._template(deployment.spec.template if deployment.spec else None)
        template = self._template(chosen.spec.template if chosen.spec else None)
        if template == current:
            raise ClusterError(
                f"Deployment {self.name} is already at revision {wanted}: nothing to roll back."
            )
        kept = (deployment.metadata.annotations if deployment.metadata else None) or {}
        copied = (chosen.metadata.annotations if chosen.metadata else None) or {}
        annotations = {k: v for k, v in kept.items() if k in ANNOTATIONS_KEPT_ON_UNDO}
        annotations.update({k: v for k, v in copied.items() if k not in ANNOTATIONS_KEPT_ON_UNDO})
        self._patch(
            [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ],
            JSON_PATCH,
        )
        restored = self._revision(chosen, current)
        return Revision(
            number=restored.number,
            image=restored.image,
            created_at=restored.created_at,
            replicaset=restored.replicaset,
            change_cause=restored.change_cause,
            current=True,
            replicas=restored.replicas,
        )

    def restart(self, at: datetime) -> DeploymentState:
        """`kubectl rollout restart`: a new pod template annotation, so every pod is replaced."""
        if at.tzinfo is None:
            raise ValueError("restart() needs an aware datetime.")
        deployment = self._read()
        self._container(deployment)
        if deployment.spec and deployment.spec.paused:
            raise ClusterError(
                f"Deployment {self.name} is paused: resume it before restarting "
                f"(kubectl rollout resume deployment/{self.name})."
            )
        stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        return self._state(self._patch(patch, STRATEGIC_MERGE))

    def scale(self, replicas: int) -> None:
        """`kubectl scale --replicas=N`, through the scale subresource (no new revision)."""
        self._session.call(
            lambda api: self._apps(api).patch_namespaced_deployment_scale(
                self.name,
                self.namespace,
                {"spec": {"replicas": replicas}},
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            self._missing,
        )

    def set_env(self, set_values: dict[str, str], unset: list[str]) -> DeploymentState:
        """`kubectl set env` on the container: the new list replaces the one read, with a
        test of the old one first, so that a change made meanwhile fails instead of being lost."""
        deployment = self._read()
        index, container = self._container(deployment)
        api = self._session.client()
        old = [api.sanitize_for_serialization(entry) for entry in container.env or []]
        new: list[dict[str, Any]] = []
        for entry in old:
            if entry["name"] in unset:
                continue
            if entry["name"] in set_values:
                entry = {"name": entry["name"], "value": set_values[entry["name"]]}
            new.append(entry)
        present = {entry["name"] for entry in old}
        new += [{"name": k, "value": v} for k, v in set_values.items() if k not in present]
        base = f"/spec/template/spec/containers/{index}"
        operations: list[dict[str, Any]] = [
            {"op": "test", "path": f"{base}/name", "value": self.container}
        ]
        if container.env is None:
            # No list to test: the generation moves with any change of the spec instead.
            generation = deployment.metadata.generation if deployment.metadata else None
            operations += [
                {"op": "test", "path": "/metadata/generation", "value": generation},
                {"op": "add", "path": f"{base}/env", "value": new},
            ]
        else:
            operations += [
                {"op": "test", "path": f"{base}/env", "value": old},
                {"op": "replace", "path": f"{base}/env", "value": new},
            ]
        conflict = (
            f"The environment of container {self.container} in deployment {self.name} changed "
            "while it was being edited, so nothing was changed: look again and retry."
        )
        return self._state(self._patch(operations, JSON_PATCH, conflict))

    def logs(self, pod: str | None, tail: int) -> list[tuple[str, str]]:
        """The last `tail` lines of the container's log in one pod of the deployment, or in
        each of its pods when `pod` is None, as (pod name, line)."""
        names = [p.name for p in self.pods()]
        if pod is not None and pod not in names:
            raise ClusterError(f"Pod {pod} is not one of the pods of deployment {self.name}.")
        lines: list[tuple[str, str]] = []
        for name in [pod] if pod is not None else names:
            try:
                text = self._log(name, tail)
            except ClusterError as exc:
                # A pod still starting, or just gone, must not hide the others' logs.
                if pod is not None or exc.status not in (400, 404):
                    raise
                lines.append((name, f"(no log: {exc.message})"))
                continue
            lines.extend((name, line) for line in text.splitlines())
        return lines

    def _log(self, pod: str, tail: int) -> str:
        return self._session.call(
            lambda api: k8s.CoreV1Api(api).read_namespaced_pod_log(
                pod,
                self.namespace,
                container=self.container,
                tail_lines=tail,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            f"Pod {pod} was not found in namespace {self.namespace}.",
        )

    def rollout_status(self) -> RolloutStatus:
        """What `kubectl rollout status` says, by kubectl's DeploymentStatusViewer logic."""
        deployment = self._read()
        spec = deployment.spec
        status = deployment.status or k8s.V1DeploymentStatus()
        generation = _count(deployment.metadata.generation if deployment.metadata else None)
        desired = _count(spec.replicas if spec else None)
        replicas = _count(status.replicas)
        updated = _count(status.updated_replicas)
        ready = _count(status.ready_replicas)
        available = _count(status.available_replicas)
        progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
        waiting = f'Waiting for deployment "{self.name}" rollout to finish: '
        done = failed = False
        if generation > _count(status.observed_generation):
            message = "Waiting for deployment spec update to be observed..."
        elif progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
            failed = True
            message = f'deployment "{self.name}" exceeded its progress deadline'
        elif spec is not None and spec.replicas is not None and updated < desired:
            message = f"{waiting}{updated} out of {desired} new replicas have been updated..."
        elif replicas > updated:
            message = f"{waiting}{replicas - updated} old replicas are pending termination..."
        elif available < updated:
            message = f"{waiting}{available} of {updated} updated replicas are available..."
        else:
            done = True
            message = f'deployment "{self.name}" successfully rolled out'
        return RolloutStatus(done, failed, message, desired, updated, ready, available)
