"""Build pod manifests, compared as dicts and validated against Kubernetes' schemas."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from binderhub_service.executors.pod import (
    BuildPodOptions,
    build_pod_labels,
    build_pod_name,
    git_credential_secret_name,
    label_selector,
    label_value,
    make_build_pod,
    make_git_credential_secret,
    owner_reference_patch,
    pick_sticky_node,
    selector_labels,
)
from binderhub_service.pod_build import BuildSpec, parse_spec
from binderhub_service.repo2docker import Repo2DockerOptions

Validate = Callable[[dict[str, Any]], None]
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

R2D = Repo2DockerOptions(
    repo_url="https://github.com/binder-examples/requirements",
    ref="0123456789abcdef0123456789abcdef01234567",
    image_name="registry.example.org/binder/requirements:0123456789ab",
    push=True,
)
NAME = build_pod_name(R2D.repo_url, R2D.ref)
GIT = "repo2docker.contentproviders.Git"
TOLERATION = {
    "key": "hub.jupyter.org/dedicated",
    "operator": "Equal",
    "value": "user",
    "effect": "NoSchedule",
}


def minimal_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": NAME,
            "labels": {
                "component": "binderhub-service-build",
                "binderhub-service/build-id": "b1",
                "app.kubernetes.io/name": "binderhub-service",
                "app.kubernetes.io/component": "build",
                "app.kubernetes.io/managed-by": "binderhub-service",
            },
            "annotations": {
                "binderhub-service/repo": R2D.repo_url,
                "binderhub-service/ref": R2D.ref,
                "binderhub-service/image": R2D.image_name,
                "binderhub-service/build-id": "b1",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "repo2docker",
                    "image": "ghcr.io/binderhub-service/binderhub-service:0.1.0.dev0",
                    "command": ["python", "-m", "binderhub_service.pod_build"],
                    "args": [BuildSpec(repo2docker=R2D, content_provider=GIT).to_json()],
                    "env": [{"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"}],
                    "volumeMounts": [
                        {"name": "docker-socket", "mountPath": "/var/run/docker.sock"},
                        {"name": "build-tmp", "mountPath": "/tmp"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
            "volumes": [
                {
                    "name": "docker-socket",
                    "hostPath": {"path": "/var/run/dind/docker.sock", "type": "Socket"},
                },
                {"name": "build-tmp", "emptyDir": {}},
            ],
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [],
        },
    }


def test_minimal_pod(assert_valid: Validate) -> None:
    pod = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D))
    assert pod == minimal_pod()
    assert_valid(pod)


def test_full_pod(assert_valid: Validate) -> None:
    options = BuildPodOptions(
        build_id="b1",
        repo2docker=R2D,
        image="binderhub-service:custom",
        command=("binderhub-pod-build",),
        namespace="binder",
        docker_socket_host_path="/run/dind/docker.sock",
        registry_secret_name="bhs-registry",
        env={"GIT_TERMINAL_PROMPT": "0"},
        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        node_selector={"pool": "builds"},
        tolerations=(TOLERATION,),
        active_deadline_seconds=3600,
        run_as_user=1000,
        run_as_group=1000,
        supplemental_groups=(998,),
        service_account_name="builder",
        image_pull_secrets=("pull",),
        extra_labels={"app.kubernetes.io/instance": "bhs", "component": "overridden"},
        extra_annotations={"example.org/team": "data"},
    )
    pod = make_build_pod(options)
    expected = minimal_pod()
    expected["metadata"]["namespace"] = "binder"
    expected["metadata"]["labels"]["app.kubernetes.io/instance"] = "bhs"
    expected["metadata"]["annotations"]["example.org/team"] = "data"
    spec = expected["spec"]
    container = spec["containers"][0]
    container["image"] = "binderhub-service:custom"
    container["command"] = ["binderhub-pod-build"]
    # The registry credentials and the operator's environment are the spec's to place:
    # the pod's environment has neither.
    container["args"] = [
        BuildSpec(
            repo2docker=R2D,
            content_provider=GIT,
            registry_config_dir="/etc/binderhub-service/docker",
            env={"GIT_TERMINAL_PROMPT": "0"},
        ).to_json()
    ]
    container["volumeMounts"].append(
        {"name": "docker-config", "mountPath": "/etc/binderhub-service/docker", "readOnly": True}
    )
    container["resources"] = {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "4Gi"},
    }
    spec["volumes"][0]["hostPath"]["path"] = "/run/dind/docker.sock"
    spec["volumes"].append(
        {
            "name": "docker-config",
            "secret": {
                "secretName": "bhs-registry",
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        }
    )
    spec["securityContext"].update(
        {"runAsUser": 1000, "runAsNonRoot": True, "runAsGroup": 1000, "supplementalGroups": [998]}
    )
    spec["tolerations"] = [TOLERATION]
    spec["nodeSelector"] = {"pool": "builds"}
    spec["activeDeadlineSeconds"] = 3600
    spec["serviceAccountName"] = "builder"
    spec["imagePullSecrets"] = [{"name": "pull"}]
    assert pod == expected
    assert_valid(pod)


def test_sticky_node_adds_preferred_affinity_to_given_affinity(assert_valid: Validate) -> None:
    given = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]},
                }
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"component": "binderhub-service-build"}},
                    },
                }
            ]
        },
    }
    options = BuildPodOptions(build_id="b1", repo2docker=R2D, affinity=given, sticky_node="node-2")
    pod = make_build_pod(options)
    preferred = pod["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred == [
        given["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0],
        {
            "weight": 100,
            "preference": {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-2"]}
                ]
            },
        },
    ]
    assert pod["spec"]["affinity"]["podAntiAffinity"] == given["podAntiAffinity"]
    # The options' own mapping is left as it was.
    assert len(given["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]) == 1
    assert_valid(pod)


def test_sticky_node_alone(assert_valid: Validate) -> None:
    pod = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D, sticky_node="n1"))
    assert pod["spec"]["affinity"] == {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
                        ]
                    },
                }
            ]
        }
    }
    assert_valid(pod)


def test_root_user_is_not_marked_non_root(assert_valid: Validate) -> None:
    pod = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D, run_as_user=0))
    assert pod["spec"]["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 0,
        "runAsNonRoot": False,
    }
    assert_valid(pod)


def test_the_one_argument_is_the_build_spec() -> None:
    r2d = replace(R2D, push=False, config_file="/etc/r2d/config.py", extra_args=("--debug",))
    zenodo = "repo2docker.contentproviders.Zenodo"
    options = BuildPodOptions(build_id="b1", repo2docker=r2d, content_provider=zenodo)
    [arg] = make_build_pod(options)["spec"]["containers"][0]["args"]
    spec = parse_spec(arg)
    assert spec.repo2docker == r2d
    assert spec.content_provider == zenodo
    assert spec.registry_config_dir is None


def test_options_are_not_shared_with_the_manifest() -> None:
    options = BuildPodOptions(
        build_id="b1", repo2docker=R2D, tolerations=(TOLERATION,), node_selector={"a": "b"}
    )
    pod = make_build_pod(options)
    pod["spec"]["tolerations"][0]["value"] = "changed"
    pod["spec"]["nodeSelector"]["a"] = "changed"
    assert options.tolerations[0]["value"] == "user"
    assert options.node_selector == {"a": "b"}


@pytest.mark.parametrize(
    ("repo_url", "ref"),
    [
        ("https://github.com/binder-examples/requirements", "main"),
        ("https://github.com/binder-examples/requirements.git", "main"),
        ("git://127.0.0.1:9418/repo.git", "0" * 40),
        ("https://gitlab.com/" + "Very_Long-Group/" * 10 + "Project.Name", "v1.0"),
        ("https://example.org/", "x"),
        ("https://example.org/___/---/", "refs/heads/ünïcode"),
        ("file:///srv/repos/UPPER CASE repo", "HEAD"),
    ],
)
def test_pod_name_is_a_dns_label(repo_url: str, ref: str) -> None:
    name = build_pod_name(repo_url, ref)
    assert DNS_1123_LABEL.match(name), name
    assert len(name) <= 63
    assert name.startswith("build-")
    assert name == build_pod_name(repo_url, ref)


def test_pod_name_is_readable_and_distinct() -> None:
    name = build_pod_name("https://github.com/binder-examples/requirements", "main")
    assert name.startswith("build-binder-examples-requirements-")
    names = {
        build_pod_name("https://github.com/binder-examples/requirements", "main"),
        build_pod_name("https://github.com/binder-examples/requirements", "other"),
        build_pod_name("https://gitlab.com/binder-examples/requirements", "main"),
    }
    assert len(names) == 3


@pytest.mark.parametrize(
    ("build_id", "expected"),
    [
        ("b1", "b1"),
        ("4f1c2e7a-0b7d-4a36-9a11-3cfe5d7a9e10", "4f1c2e7a-0b7d-4a36-9a11-3cfe5d7a9e10"),
        ("-weird/id with spaces-", "weird-id-with-spaces"),
        ("x" * 80, "x" * 63),
    ],
)
def test_label_value(build_id: str, expected: str) -> None:
    assert label_value(build_id) == expected


def test_label_selector_of_build_labels() -> None:
    labels = build_pod_labels("b1", {"app.kubernetes.io/instance": "bhs"})
    assert label_selector({"component": labels["component"], "z": "1", "a": "2"}) == (
        "a=2,component=binderhub-service-build,z=1"
    )


def test_sticky_node_is_stable_and_spreads() -> None:
    nodes = [f"node-{i}" for i in range(5)]
    repos = [f"https://github.com/org/repo-{i}" for i in range(200)]
    picks = {repo: pick_sticky_node(repo, nodes) for repo in repos}
    assert picks == {repo: pick_sticky_node(repo, reversed(nodes)) for repo in repos}
    counts = {node: list(picks.values()).count(node) for node in nodes}
    assert all(count > 10 for count in counts.values()), counts


def test_sticky_node_moves_only_repos_of_a_removed_node() -> None:
    nodes = [f"node-{i}" for i in range(5)]
    repos = [f"https://github.com/org/repo-{i}" for i in range(200)]
    before = {repo: pick_sticky_node(repo, nodes) for repo in repos}
    after = {repo: pick_sticky_node(repo, nodes[:-1]) for repo in repos}
    moved = {repo for repo in repos if before[repo] != after[repo]}
    assert moved == {repo for repo in repos if before[repo] == "node-4"}


def test_sticky_node_without_nodes() -> None:
    assert pick_sticky_node("https://github.com/org/repo", []) is None


def test_pod_reads_the_git_credential_from_its_secret(assert_valid: Validate) -> None:
    secret = git_credential_secret_name(NAME)
    options = BuildPodOptions(
        build_id="b1",
        repo2docker=R2D,
        git_credential_secret_name=secret,
    )
    pod = make_build_pod(options)
    expected = minimal_pod()
    expected["spec"]["containers"][0]["env"] = [
        {"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"},
        {
            "name": "GIT_CREDENTIAL_ENV",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "GIT_CREDENTIAL_ENV"}},
        },
    ]
    assert pod == expected
    assert_valid(pod)


def test_git_credential_secret(assert_valid: Validate) -> None:
    pod = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D, namespace="binder"))
    secret = make_git_credential_secret(pod, "username=u\\npassword=p")
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{NAME}-git-credential",
            "namespace": "binder",
            "labels": minimal_pod()["metadata"]["labels"],
        },
        "type": "Opaque",
        "stringData": {"GIT_CREDENTIAL_ENV": "username=u\\npassword=p"},
    }
    assert len(secret["metadata"]["name"]) <= 253
    assert_valid(secret)


def test_owner_reference_patch(assert_valid: Validate) -> None:
    created = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D, namespace="binder"))
    created["metadata"]["uid"] = "0f1e2d3c-0000-4000-8000-000000000001"
    patch = owner_reference_patch(created)
    assert patch == {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": NAME,
                    "uid": "0f1e2d3c-0000-4000-8000-000000000001",
                }
            ]
        }
    }
    secret = make_git_credential_secret(created, "x")
    assert_valid({**secret, "metadata": {**secret["metadata"], **patch["metadata"]}})


def test_pod_names_and_labels_are_scoped_by_installation() -> None:
    """Two installations never share a pod name, and select only their own pods."""
    names = {build_pod_name(R2D.repo_url, R2D.ref, instance) for instance in ("", "a", "b")}
    assert len(names) == 3
    pod = make_build_pod(BuildPodOptions(build_id="b1", repo2docker=R2D, instance="a"))
    assert pod["metadata"]["name"] == build_pod_name(R2D.repo_url, R2D.ref, "a")
    assert selector_labels("a") == {
        "component": "binderhub-service-build",
        "app.kubernetes.io/instance": "a",
    }
    assert selector_labels("a").items() <= pod["metadata"]["labels"].items()
