"""The Kubernetes driver, driving the unmodified official client over HTTP against the API
emulator: what the runbooks do with kubectl, and how a cluster's refusals come out."""

from __future__ import annotations

import base64
import glob
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from apps.services.cluster import (
    ClusterConnection,
    ClusterError,
    KubeDeployment,
    RolloutStatus,
    parse_kubeconfig,
    server_version,
)
from tests.support.kube_emulator import DEMO_DEPLOYMENTS, KubeEmulator, kubeconfig_for
from tests.support.waiting import wait_for

NAMESPACE = "shop"
IMAGE_V1 = "registry.example.com/shop/api:1.0.0"
IMAGE_V2 = "registry.example.com/shop/api:2.0.0"
IMAGE_V3 = "registry.example.com/shop/api:3.0.0"
FAILING_IMAGE = "registry.example.com/shop/api:2.0.0-fail"
DEADLINE_SECONDS = 2
ROOT = Path(__file__).resolve().parents[2]

_names = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    kube = KubeEmulator(ready_seconds=0.2).start()
    yield kube
    kube.stop()


@pytest.fixture
def make_deployment(emulator: KubeEmulator) -> Iterator[Callable[..., KubeDeployment]]:
    """A fresh, rolled-out deployment of its own for each call (the emulator is shared)."""
    opened: list[KubeDeployment] = []

    def make(replicas: int = 3, env: dict[str, str] | None = None) -> KubeDeployment:
        name = f"api-{next(_names)}"
        emulator.add_deployment(
            NAMESPACE,
            name,
            IMAGE_V1,
            replicas=replicas,
            container="api",
            progress_deadline_seconds=DEADLINE_SECONDS,
            env={"LOG_LEVEL": "info"} if env is None else env,
        )
        deployment = KubeDeployment(
            ClusterConnection(emulator.kubeconfig()), NAMESPACE, name, "api"
        )
        opened.append(deployment)
        return deployment

    yield make
    for deployment in opened:
        deployment.close()


@pytest.fixture
def deployment(make_deployment: Callable[..., KubeDeployment]) -> KubeDeployment:
    return make_deployment()


def settled(deployment: KubeDeployment, timeout: float = 10) -> RolloutStatus:
    """Poll like `kubectl rollout status` until the rollout is done or has failed."""

    def outcome() -> RolloutStatus | None:
        status = deployment.rollout_status()
        return status if status.done or status.failed else None

    status = wait_for(outcome, timeout=timeout, what=f"the rollout of {deployment.name}")
    assert status is not None
    return status


def refusal(call: Callable[[], Any]) -> ClusterError:
    with pytest.raises(ClusterError) as caught:
        call()
    return caught.value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_status(emulator: KubeEmulator, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{emulator.url}{path}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# --- Reading --------------------------------------------------------------------------------


def test_it_reads_the_version_and_a_deployment(
    emulator: KubeEmulator, deployment: KubeDeployment
) -> None:
    assert server_version(ClusterConnection(emulator.kubeconfig())) == "v1.31.0-emulator"

    state = deployment.read()

    assert (state.name, state.namespace, state.container) == (deployment.name, NAMESPACE, "api")
    assert state.image == IMAGE_V1
    assert (state.desired_replicas, state.ready_replicas, state.available_replicas) == (3, 3, 3)
    assert state.revision == 1
    assert state.generation == state.observed_generation == 1
    assert state.env == {"LOG_LEVEL": "info"}
    assert state.progress_deadline_seconds == DEADLINE_SECONDS
    assert not state.paused
    available = state.condition("Available")
    assert available is not None and available.status == "True"
    assert available.last_update is not None and available.last_update.tzinfo is not None
    status = deployment.rollout_status()
    assert status.done and not status.failed
    assert status.message == f'deployment "{deployment.name}" successfully rolled out'


def test_it_lists_the_pods(deployment: KubeDeployment) -> None:
    pods = deployment.pods()

    assert len(pods) == 3
    history = deployment.revisions()
    for pod in pods:
        assert pod.name.startswith(history[0].replicaset + "-")
        assert len(pod.name) == len(history[0].replicaset) + 6
        assert (pod.phase, pod.ready, pod.restarts, pod.reason) == ("Running", True, 0, "")
        assert pod.image == IMAGE_V1
        assert pod.node.startswith("node-")
        assert pod.started_at is not None
    assert [pod.name for pod in deployment.pods()] == [pod.name for pod in pods]


def test_it_reads_logs_with_a_tail(deployment: KubeDeployment) -> None:
    pods = [pod.name for pod in deployment.pods()]

    lines = deployment.logs(None, 2)

    assert len(lines) == 2 * len(pods)
    assert {pod for pod, _ in lines} == set(pods)
    for pod, line in lines:
        assert pod in line
        assert line[:4].isdigit()  # a timestamp first
    only = deployment.logs(pods[0], 1)
    assert len(only) == 1 and only[0][0] == pods[0]
    assert "starting api " + IMAGE_V1 in deployment.logs(pods[0], 500)[0][1]
    error = refusal(lambda: deployment.logs("someone-else-7x9kq", 5))
    assert (
        error.message
        == f"Pod someone-else-7x9kq is not one of the pods of deployment {deployment.name}."
    )


# --- Rollouts and rollbacks -----------------------------------------------------------------


def test_it_rolls_out_a_new_image(emulator: KubeEmulator, deployment: KubeDeployment) -> None:
    started = deployment.set_image(IMAGE_V2, change_cause="OpsPortal #7: set image 2.0.0")

    assert started.image == IMAGE_V2
    assert started.revision == 2
    assert started.generation == 2
    waiting = deployment.rollout_status()
    assert not waiting.done and not waiting.failed
    assert waiting.message.startswith(f'Waiting for deployment "{deployment.name}" rollout')
    assert settled(deployment).done
    state = deployment.read()
    assert (state.image, state.revision, state.ready_replicas) == (IMAGE_V2, 2, 3)
    history = deployment.revisions()
    assert [(r.number, r.image, r.current) for r in history] == [
        (2, IMAGE_V2, True),
        (1, IMAGE_V1, False),
    ]
    assert history[0].change_cause == "OpsPortal #7: set image 2.0.0"
    assert (history[0].replicas, history[1].replicas) == (3, 0)
    assert {pod.image for pod in deployment.pods()} == {IMAGE_V2}
    code, health = app_status(emulator, f"/apps/{NAMESPACE}/{deployment.name}/health")
    assert (code, health["status"], health["version"]) == (200, "ok", "2.0.0")


def test_a_failing_image_exceeds_its_deadline_and_undo_recovers(
    emulator: KubeEmulator, deployment: KubeDeployment
) -> None:
    deployment.set_image(FAILING_IMAGE)

    status = settled(deployment)

    assert status.failed and not status.done
    assert status.message == f'deployment "{deployment.name}" exceeded its progress deadline'
    state = deployment.read()
    progressing = state.condition("Progressing")
    assert progressing is not None
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    # The old ReplicaSet keeps serving while the new pod crashes.
    assert state.available_replicas == 3
    pods = deployment.pods()
    serving = [pod for pod in pods if pod.ready]
    crashing = [pod for pod in pods if not pod.ready]
    assert {pod.image for pod in serving} == {IMAGE_V1} and len(serving) == 3
    assert len(crashing) == 1
    assert (crashing[0].reason, crashing[0].phase) == ("CrashLoopBackOff", "Running")
    assert crashing[0].restarts > 0
    assert app_status(emulator, f"/apps/{NAMESPACE}/{deployment.name}/health/ready")[0] == 200

    restored = deployment.undo()

    assert (restored.number, restored.image) == (1, IMAGE_V1)
    assert settled(deployment).done
    state = deployment.read()
    assert (state.image, state.revision) == (IMAGE_V1, 3)
    assert [pod.image for pod in deployment.pods()] == [IMAGE_V1] * 3


def test_undo_brings_back_the_previous_revision_as_the_newest(
    deployment: KubeDeployment,
) -> None:
    deployment.set_image(IMAGE_V2)
    assert settled(deployment).done

    restored = deployment.undo()

    assert (restored.number, restored.image) == (1, IMAGE_V1)
    assert settled(deployment).done
    state = deployment.read()
    assert (state.image, state.revision) == (IMAGE_V1, 3)
    # As on a cluster: revision 1 disappears and comes back as revision 3.
    assert [(r.number, r.image, r.current) for r in deployment.revisions()] == [
        (3, IMAGE_V1, True),
        (2, IMAGE_V2, False),
    ]


def test_undo_to_a_chosen_revision(deployment: KubeDeployment) -> None:
    for image in (IMAGE_V2, IMAGE_V3):
        deployment.set_image(image)
        assert settled(deployment).done

    restored = deployment.undo(to_revision=1)

    assert (restored.number, restored.image) == (1, IMAGE_V1)
    assert settled(deployment).done
    assert (deployment.read().image, deployment.read().revision) == (IMAGE_V1, 4)
    assert [r.number for r in deployment.revisions()] == [4, 3, 2]
    gone = refusal(lambda: deployment.undo(to_revision=1))
    assert gone.message == (
        f"Revision 1 was not found in the history of deployment {deployment.name}."
    )
    already = refusal(lambda: deployment.undo(to_revision=4))
    assert "already at revision 4" in already.message
    restored = deployment.undo()
    assert (restored.number, restored.image) == (3, IMAGE_V3)


def test_undo_needs_a_previous_revision(deployment: KubeDeployment) -> None:
    error = refusal(deployment.undo)

    assert error.message == "There is no previous revision to roll back to."


def test_restart_rolls_every_pod_as_a_new_revision(deployment: KubeDeployment) -> None:
    before = {pod.name for pod in deployment.pods()}

    started = deployment.restart(datetime.now(UTC))

    assert started.revision == 2
    assert started.image == IMAGE_V1
    assert settled(deployment).done
    after = deployment.pods()
    assert len(after) == 3 and not before & {pod.name for pod in after}
    assert deployment.restart(datetime.now(UTC) + timedelta(seconds=5)).revision == 3
    with pytest.raises(ValueError):
        deployment.restart(datetime(2030, 1, 1))


def test_scale_changes_replicas_without_a_revision(
    emulator: KubeEmulator, deployment: KubeDeployment
) -> None:
    deployment.scale(5)

    assert deployment.read().desired_replicas == 5
    wait_for(lambda: deployment.read().ready_replicas == 5, timeout=10, what="5 ready pods")
    assert deployment.rollout_status().done
    deployment.scale(1)
    state = deployment.read()
    assert (state.desired_replicas, state.ready_replicas, state.revision) == (1, 1, 1)
    assert len(deployment.pods()) == 1
    deployment.scale(0)
    assert deployment.pods() == []
    assert deployment.rollout_status().done
    health = f"/apps/{NAMESPACE}/{deployment.name}/health"
    assert app_status(emulator, f"{health}/ready")[0] == 503
    assert app_status(emulator, health) == (503, app_status(emulator, health)[1])
    assert app_status(emulator, health)[1]["status"] == "down"
    assert app_status(emulator, f"{health}/live")[0] == 200
    negative = refusal(lambda: deployment.scale(-1))
    assert negative.status == 422
    assert "spec.replicas: Invalid value: -1" in negative.message


def test_set_env_sets_and_unsets(make_deployment: Callable[..., KubeDeployment]) -> None:
    deployment = make_deployment(env={"LOG_LEVEL": "info", "MAINTENANCE_MODE": "false"})

    state = deployment.set_env({"MAINTENANCE_MODE": "true", "FEATURE_X": "on"}, [])

    assert state.env == {"LOG_LEVEL": "info", "MAINTENANCE_MODE": "true", "FEATURE_X": "on"}
    assert state.revision == 2
    state = deployment.set_env({}, ["FEATURE_X", "NOT_THERE"])
    assert state.env == {"LOG_LEVEL": "info", "MAINTENANCE_MODE": "true"}
    assert state.revision == 3
    assert settled(deployment).done
    bare = make_deployment(replicas=1, env={})
    assert bare.set_env({"FIRST": "1"}, []).env == {"FIRST": "1"}


def test_set_env_fails_cleanly_when_someone_changed_it_meanwhile(
    deployment: KubeDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = deployment._read()
    deployment.set_env({"LOG_LEVEL": "debug"}, [])
    monkeypatch.setattr(deployment, "_read", lambda: stale)

    error = refusal(lambda: deployment.set_env({"FEATURE_X": "on"}, []))

    assert "changed while it was being edited" in error.message
    monkeypatch.undo()
    assert deployment.read().env == {"LOG_LEVEL": "debug"}


# --- Refusals and failures ------------------------------------------------------------------


def test_a_missing_deployment(emulator: KubeEmulator) -> None:
    missing = KubeDeployment(ClusterConnection(emulator.kubeconfig()), NAMESPACE, "nope", "api")

    error = refusal(missing.read)

    assert error.message == f"Deployment nope was not found in namespace {NAMESPACE}."
    assert error.status == 404
    assert refusal(lambda: missing.scale(2)).status == 404


def test_an_unknown_container(emulator: KubeEmulator, deployment: KubeDeployment) -> None:
    wrong = KubeDeployment(
        ClusterConnection(emulator.kubeconfig()), NAMESPACE, deployment.name, "web"
    )

    error = refusal(wrong.read)

    assert error.message == (
        f"Deployment {deployment.name} in namespace {NAMESPACE} has no container web; "
        "its containers are: api."
    )
    assert refusal(lambda: wrong.set_image(IMAGE_V2)).message == error.message
    assert deployment.read().image == IMAGE_V1  # nothing was added to the pod template


def test_an_empty_image_is_refused_by_the_cluster(deployment: KubeDeployment) -> None:
    error = refusal(lambda: deployment.set_image(""))

    assert error.status == 422
    assert error.message == (
        f'The cluster refused: Deployment.apps "{deployment.name}" is invalid: '
        "spec.template.spec.containers[0].image: Required value (HTTP 422)."
    )


def test_a_forbidden_request(emulator: KubeEmulator, deployment: KubeDeployment) -> None:
    connection = ClusterConnection(emulator.kubeconfig(token=emulator.forbidden_token))
    forbidden = KubeDeployment(connection, NAMESPACE, deployment.name, "api")

    error = refusal(lambda: forbidden.scale(1))

    assert error.status == 403
    assert error.message.startswith(
        f'The cluster refused: deployments.apps "{deployment.name}" is forbidden: '
        'User "system:serviceaccount:ops:portal" cannot patch resource "deployments/scale"'
    )
    assert error.message.endswith("(HTTP 403).")
    assert emulator.forbidden_token not in error.message
    assert refusal(forbidden.read).status == 403


def test_an_unknown_token(emulator: KubeEmulator, deployment: KubeDeployment) -> None:
    token = "not-a-token-the-cluster-knows"
    connection = ClusterConnection(emulator.kubeconfig(token=token))

    error = refusal(KubeDeployment(connection, NAMESPACE, deployment.name, "api").read)

    assert error.status == 401
    assert error.message == "The cluster refused the portal's credentials: Unauthorized (HTTP 401)."
    assert token not in error.message
    assert refusal(lambda: server_version(connection)).status == 401


def test_an_unreachable_cluster() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    connection = ClusterConnection(kubeconfig_for(url, "a-secret-token"))

    error = refusal(KubeDeployment(connection, NAMESPACE, "api", "api").read)

    assert error.message == f"Cannot reach the cluster at {url} (connection refused)."
    assert error.status is None
    assert "a-secret-token" not in error.message
    assert refusal(lambda: server_version(connection)).message == error.message


def test_a_context_that_is_not_there(emulator: KubeEmulator) -> None:
    connection = ClusterConnection(emulator.kubeconfig(), context="prod")

    error = refusal(lambda: server_version(connection))

    assert error.message == 'The kubeconfig has no context "prod"; it has: emulator.'


def test_the_global_client_configuration_is_left_alone(deployment: KubeDeployment) -> None:
    deployment.read()

    assert k8s.Configuration._default is None


def test_client_certificates_live_only_as_long_as_the_driver(emulator: KubeEmulator) -> None:
    emulator.add_deployment(NAMESPACE, "certified", IMAGE_V1, replicas=1, container="api")
    config = json.loads(emulator.kubeconfig())
    user = config["users"][0]["user"]
    user["client-certificate-data"] = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
    user["client-key-data"] = base64.b64encode(b"-----BEGIN PRIVATE KEY-----").decode()
    pattern = os.path.join(tempfile.gettempdir(), "opsportal-kube-*")
    before = set(glob.glob(pattern))

    with KubeDeployment(ClusterConnection(json.dumps(config)), NAMESPACE, "certified", "api") as d:
        assert d.read().ready_replicas == 1
        (directory,) = set(glob.glob(pattern)) - before
        assert sorted(os.listdir(directory)) == ["client.crt", "client.key"]
        assert os.stat(os.path.join(directory, "client.key")).st_mode & 0o077 == 0

    assert not os.path.exists(directory)


# --- Kubeconfigs ----------------------------------------------------------------------------


def test_parse_kubeconfig_lists_the_contexts(emulator: KubeEmulator) -> None:
    assert parse_kubeconfig(emulator.kubeconfig()) == ["emulator"]
    config = yaml.safe_load(emulator.kubeconfig())
    config["contexts"].append({"name": "other", "context": {"cluster": "emulator"}})
    assert parse_kubeconfig(yaml.safe_dump(config)) == ["emulator", "other"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda c: "clusters: [unclosed", "not valid YAML"),
        (lambda c: "just some words", "not a kubeconfig"),
        (lambda c: {**c, "contexts": []}, "no contexts"),
        (lambda c: {**c, "clusters": []}, "no clusters"),
        (
            lambda c: {**c, "contexts": [{"name": "x", "context": {"cluster": "elsewhere"}}]},
            'names the cluster "elsewhere"',
        ),
        (
            lambda c: {
                **c,
                "users": [{"name": "portal", "user": {"exec": {"command": "aws", "args": []}}}],
            },
            "runs a program",
        ),
        (
            lambda c: {
                **c,
                "users": [{"name": "portal", "user": {"auth-provider": {"name": "oidc"}}}],
            },
            "runs a program",
        ),
        (
            lambda c: {**c, "users": [{"name": "portal", "user": {"tokenFile": "/etc/token"}}]},
            "refers to a file",
        ),
    ],
)
def test_parse_kubeconfig_refuses(
    emulator: KubeEmulator, change: Callable[[dict[str, Any]], Any], words: str
) -> None:
    changed = change(yaml.safe_load(emulator.kubeconfig()))
    text = changed if isinstance(changed, str) else yaml.safe_dump(changed)

    with pytest.raises(ValueError, match=words):
        parse_kubeconfig(text)

    error = refusal(lambda: server_version(ClusterConnection(text)))
    assert error.message.startswith("The kubeconfig cannot be used:")


def test_exec_plugins_are_never_run(emulator: KubeEmulator, tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    config = yaml.safe_load(emulator.kubeconfig())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "touch",
            "args": [str(witness)],
        }
    }

    with pytest.raises(ValueError, match="not allowed"):
        parse_kubeconfig(yaml.safe_dump(config))
    refusal(lambda: server_version(ClusterConnection(yaml.safe_dump(config))))

    assert not witness.exists()


# --- The emulator itself, through the official client ---------------------------------------


@pytest.fixture
def apps_api(emulator: KubeEmulator) -> Iterator[k8s.AppsV1Api]:
    configuration = k8s.Configuration(host=emulator.url)
    configuration.api_key = {"BearerToken": f"Bearer {emulator.token}"}
    with k8s.ApiClient(configuration) as api:
        yield k8s.AppsV1Api(api)


def as_json(api: k8s.AppsV1Api, model: object) -> dict[str, Any]:
    """An object the client parsed into its model, back as the API's JSON."""
    data = api.api_client.sanitize_for_serialization(model)
    assert isinstance(data, dict)
    return data


def status_of(error: k8s.ApiException) -> dict[str, Any]:
    status = json.loads(error.body or "{}")
    assert isinstance(status, dict) and status["kind"] == "Status"
    assert status["code"] == error.status
    return status


def manifest(name: str, replicas: int, containers: list[k8s.V1Container]) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels), spec=k8s.V1PodSpec(containers=containers)
            ),
        ),
    )


def test_the_emulator_merges_what_kubectl_sends(
    apps_api: k8s.AppsV1Api, deployment: KubeDeployment
) -> None:
    name = deployment.name
    apps_api.patch_namespaced_deployment(
        name,
        NAMESPACE,
        {
            "metadata": {"annotations": {"team": "shop", "note": "x"}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "api", "env": [{"name": "EXTRA", "value": "1"}]},
                            {"name": "sidecar", "image": "registry.example.com/proxy:1"},
                        ]
                    }
                }
            },
        },
    )
    patched = apps_api.patch_namespaced_deployment(
        name,
        NAMESPACE,
        {
            "metadata": {"annotations": {"note": None}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "api", "env": [{"name": "LOG_LEVEL", "$patch": "delete"}]},
                            {"name": "sidecar", "$patch": "delete"},
                        ]
                    }
                }
            },
        },
    )

    data = as_json(apps_api, patched)
    annotations = data["metadata"]["annotations"]
    assert annotations["team"] == "shop" and "note" not in annotations
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    (container,) = data["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE_V1
    assert container["env"] == [{"name": "EXTRA", "value": "1"}]


def test_the_emulator_applies_json_and_merge_patches(
    apps_api: k8s.AppsV1Api, deployment: KubeDeployment
) -> None:
    name = deployment.name
    base = "/spec/template/spec/containers/0"
    with pytest.raises(k8s.ApiException) as failed:
        apps_api.patch_namespaced_deployment(
            name,
            NAMESPACE,
            [
                {"op": "test", "path": f"{base}/image", "value": "something-else"},
                {"op": "replace", "path": f"{base}/image", "value": IMAGE_V2},
            ],
        )
    status = status_of(failed.value)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert "test failed" in status["details"]["causes"][0]["message"]

    patched = as_json(
        apps_api,
        apps_api.patch_namespaced_deployment(
            name,
            NAMESPACE,
            [
                {"op": "test", "path": f"{base}/image", "value": IMAGE_V1},
                {"op": "replace", "path": f"{base}/image", "value": IMAGE_V2},
                {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
                {"op": "remove", "path": f"{base}/env"},
            ],
        ),
    )
    container = patched["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE_V2 and "env" not in container
    assert patched["metadata"]["labels"]["tier"] == "web"
    merged = as_json(
        apps_api,
        apps_api.patch_namespaced_deployment(
            name,
            NAMESPACE,
            {"metadata": {"labels": {"tier": None}}, "spec": {"minReadySeconds": 1}},
            _content_type="application/merge-patch+json",
        ),
    )
    assert "tier" not in merged["metadata"]["labels"]
    assert merged["spec"]["minReadySeconds"] == 1
    assert merged["metadata"]["generation"] == 3
    assert int(merged["metadata"]["resourceVersion"]) > int(patched["metadata"]["resourceVersion"])


def test_the_emulator_answers_errors_as_status_objects(
    emulator: KubeEmulator, apps_api: k8s.AppsV1Api, deployment: KubeDeployment
) -> None:
    container = k8s.V1Container(name="api", image=IMAGE_V2)
    with pytest.raises(k8s.ApiException) as exists:
        apps_api.create_namespaced_deployment(NAMESPACE, manifest(deployment.name, 1, [container]))
    assert status_of(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(k8s.ApiException) as invalid:
        apps_api.create_namespaced_deployment(NAMESPACE, manifest("broken", -1, []))
    status = status_of(invalid.value)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'Deployment.apps "broken" is invalid: [spec.replicas: Invalid value: -1: must be '
        "greater than or equal to 0, spec.template.spec.containers: Required value]"
    )
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{deployment.name}"
    request = urllib.request.Request(
        emulator.url + path,
        data=b"{not json",
        method="PATCH",
        headers={
            "Content-Type": "application/merge-patch+json",
            "Authorization": f"Bearer {emulator.token}",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=5)
    assert (bad.value.code, json.load(bad.value)["reason"]) == (400, "BadRequest")
    unknown = urllib.request.Request(
        f"{emulator.url}/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(unknown, timeout=5)
    assert missing.value.code == 404
    assert json.load(missing.value)["kind"] == "Status"
    pod = deployment.pods()[0].name
    log = urllib.request.Request(
        f"{emulator.url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log?container=web&tailLines=1",
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as no_container:
        urllib.request.urlopen(log, timeout=5)
    assert no_container.value.code == 400
    assert json.load(no_container.value)["message"] == f"container web is not valid for pod {pod}"


def test_the_emulator_keeps_only_the_revision_history_limit(
    apps_api: k8s.AppsV1Api, make_deployment: Callable[..., KubeDeployment]
) -> None:
    deployment = make_deployment(replicas=1)
    apps_api.patch_namespaced_deployment(
        deployment.name,
        NAMESPACE,
        {"spec": {"revisionHistoryLimit": 1}},
        _content_type="application/merge-patch+json",
    )

    for image in (IMAGE_V2, IMAGE_V3):
        deployment.set_image(image)
        assert settled(deployment).done

    assert [(r.number, r.image) for r in deployment.revisions()] == [(3, IMAGE_V3), (2, IMAGE_V2)]


def test_the_emulator_creates_deployments_that_roll_out(
    emulator: KubeEmulator, apps_api: k8s.AppsV1Api
) -> None:
    container = k8s.V1Container(name="api", image=IMAGE_V1)

    created = as_json(
        apps_api,
        apps_api.create_namespaced_deployment(NAMESPACE, manifest("created", 2, [container])),
    )

    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    assert created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    driver = KubeDeployment(ClusterConnection(emulator.kubeconfig()), NAMESPACE, "created", "api")
    with driver:
        assert settled(driver).done
        assert driver.read().revision == 1
    scale = apps_api.read_namespaced_deployment_scale("created", NAMESPACE)
    assert as_json(apps_api, scale)["status"] == {"replicas": 2, "selector": "app=created"}
    scale.spec = k8s.V1ScaleSpec(replicas=1)
    replaced = apps_api.replace_namespaced_deployment_scale("created", NAMESPACE, scale)
    assert as_json(apps_api, replaced)["spec"] == {"replicas": 1}


def test_the_demo_command_serves_the_demo_cluster(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kube.config"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.kube_emulator",
            "--port",
            str(port),
            "--ready-seconds",
            "0.2",
            "--demo",
            "--token",
            "demo-token",
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: kubeconfig.exists() and kubeconfig.read_text(), timeout=20, what="it")
        connection = ClusterConnection(kubeconfig.read_text())
        assert server_version(connection) == "v1.31.0-emulator"
        for demo in DEMO_DEPLOYMENTS:
            with KubeDeployment(
                connection, demo["namespace"], demo["name"], demo["container"]
            ) as deployment:
                state = deployment.read()
                assert (state.image, state.ready_replicas) == (demo["image"], demo["replicas"])
        assert yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"] == "demo-token"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert f"listening on http://127.0.0.1:{port}" in output
