"""The Helm chart: lint, render with several value sets, validate every manifest."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from chart_helpers import CHART, Render, validate

REGISTRY = {
    "registry": {"url": "https://registry.example.org", "username": "u", "password": "p"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-daemonset": {"buildDaemon": {"enabled": False}, "networkPolicy": {"enabled": False}},
    "registry": REGISTRY,
    "custom-names": {
        "fullnameOverride": "builder",
        "jupyterhubServiceName": "images",
        "service": {"port": 9000},
        "networkPolicy": {"extraBlockedCidrs": ["203.0.113.10/32"]},
        "config": {
            "KubernetesExecutor": {"sticky_builds": True, "resources": {"requests": {"cpu": "1"}}}
        },
        "extraConfig": {"BinderHubService": {"image_prefix": "registry.example.org/x/"}},
    },
}


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        key = manifest["kind"]
        if key == "Secret" and manifest["type"] == "kubernetes.io/dockerconfigjson":
            key = "RegistrySecret"
        kinds[key] = manifest
    return kinds


def service_config(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    secret = by_kind(manifests)["Secret"]
    config: dict[str, Any] = json.loads(secret["stringData"]["values.json"])
    return config


def test_lint(helm: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_manifests_are_valid(render: Render, name: str) -> None:
    manifests = render(VALUE_SETS[name])
    assert manifests
    for manifest in manifests:
        validate(manifest)


def test_default_resources(render: Render) -> None:
    kinds = by_kind(render())
    assert sorted(kinds) == sorted(
        [
            "DaemonSet",
            "Deployment",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )
    for manifest in kinds.values():
        assert manifest["metadata"]["name"].startswith("bhs-binderhub-service")


def test_role_grants_only_pods_and_build_secrets(render: Render) -> None:
    assert by_kind(render())["Role"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "delete"]},
    ]


def test_deployment(render: Render) -> None:
    deployment = by_kind(render())["Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == [
        "binderhub-service",
        "--config",
        "/etc/binderhub-service/config.py",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/services/binderhub-service/health"
    assert container["readinessProbe"]["httpGet"]["path"] == (
        "/services/binderhub-service/versions"
    )
    assert "checksum/config" in pod["metadata"]["annotations"]
    assert pod["spec"]["serviceAccountName"] == "bhs-binderhub-service"
    env = {e["name"]: e for e in container["env"]}
    # What jupyterhub.services.auth needs to authenticate users as an external service.
    assert env["JUPYTERHUB_CLIENT_ID"]["value"] == "service-binderhub-service"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"]["value"] == (
        "/services/binderhub-service/oauth_callback"
    )
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "api-token"
    cookie = env["BINDERHUB_SERVICE_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in render() if s["kind"] == "Secret"}
    assert bytes.fromhex(secrets[cookie["name"]]["stringData"][cookie["key"]])


def test_config_change_changes_the_checksum(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = by_kind(render(values))["Deployment"]["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    token = {"jupyterhub": {"apiToken": "t"}}
    assert checksum(token) == checksum(token)
    assert checksum(token) != checksum({**token, "config": {"BuildManager": {"build_timeout": 60}}})


def test_values_reach_the_service_config(render: Render) -> None:
    config = service_config(
        render(
            {
                "config": {
                    "BinderHubService": {"image_prefix": "registry.example.org/binder/"},
                    "BuildManager": {"max_concurrent_builds": 7, "build_timeout": 900},
                    "KubernetesExecutor": {"delete_finished_pods_after": 30},
                },
                "extraConfig": {"KubernetesExecutor": {"build_image": "r2d:custom"}},
            }
        )
    )
    assert config["BinderHubService"] == {
        "image_prefix": "registry.example.org/binder/",
        "use_registry": True,
        "base_url": "/services/binderhub-service/",
        "ip": "0.0.0.0",
        "port": 8585,
        "executor_class": "kubernetes",
    }
    assert config["BuildManager"] == {"max_concurrent_builds": 7, "build_timeout": 900}
    executor = config["KubernetesExecutor"]
    assert executor["namespace"] == "binder"
    assert executor["build_image"] == "r2d:custom"
    assert executor["delete_finished_pods_after"] == 30
    assert executor["docker_socket_host_path"] == "/var/run/dind/docker.sock"
    assert executor["extra_labels"] == {"app.kubernetes.io/instance": "bhs"}
    assert "registry_secret_name" not in executor


def test_config_file_sets_traits(render: Render, tmp_path) -> None:
    from traitlets.config import PyFileConfigLoader

    secret = by_kind(render(REGISTRY))["Secret"]
    (tmp_path / "config.py").write_text(secret["stringData"]["config.py"])
    (tmp_path / "values.json").write_text(secret["stringData"]["values.json"])
    config = PyFileConfigLoader("config.py", path=str(tmp_path)).load_config()
    assert config.BinderHubService.port == 8585
    assert config.BinderHubService.executor_class == "kubernetes"
    assert config.DockerRegistry.docker_config_path == (
        "/etc/binderhub-service-registry/config.json"
    )
    assert config.KubernetesExecutor.registry_secret_name == "bhs-binderhub-service-registry"


def test_registry_credentials(render: Render) -> None:
    kinds = by_kind(render(REGISTRY))
    secret = kinds["RegistrySecret"]
    docker_config = json.loads(secret["stringData"][".dockerconfigjson"])
    assert docker_config == {"auths": {"https://registry.example.org": {"auth": "dTpw"}}}
    volumes = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "registry",
        "secret": {
            "secretName": "bhs-binderhub-service-registry",
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        },
    } in volumes


def test_without_daemonset(render: Render) -> None:
    kinds = by_kind(render(VALUE_SETS["no-daemonset"]))
    assert "DaemonSet" not in kinds
    assert "NetworkPolicy" not in kinds


def test_daemonset_paths(render: Render) -> None:
    daemonset = by_kind(
        render({"buildDaemon": {"socketHostDir": "/run/builds", "storageHostPath": "/mnt/builds"}})
    )["DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["containers"][0]["securityContext"] == {"privileged": True}
    assert [volume["hostPath"]["path"] for volume in spec["volumes"]] == [
        "/run/builds",
        "/mnt/builds",
    ]


def test_network_policy_blocks_private_ranges(render: Render) -> None:
    policy = by_kind(render(VALUE_SETS["custom-names"]))["NetworkPolicy"]
    (internet,) = [rule for rule in policy["spec"]["egress"] if "ports" not in rule]
    block = internet["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "203.0.113.10/32"} <= set(
        block["except"]
    )
    assert policy["spec"]["ingress"] == []


def test_custom_names(render: Render) -> None:
    manifests = render(VALUE_SETS["custom-names"])
    for manifest in manifests:
        assert manifest["metadata"]["name"].startswith("builder")
    config = service_config(manifests)
    assert config["BinderHubService"]["port"] == 9000
    assert config["BinderHubService"]["base_url"] == "/services/images/"
    assert config["BinderHubService"]["image_prefix"] == "registry.example.org/x/"
    assert config["KubernetesExecutor"]["sticky_builds"] is True


def test_two_releases_have_distinct_names(render: Render) -> None:
    first = {m["kind"] + "/" + m["metadata"]["name"] for m in render(release="one")}
    second = {m["kind"] + "/" + m["metadata"]["name"] for m in render(release="two")}
    assert len(first) == len(second) == 8
    assert not first & second


def test_notes_print_the_hub_snippet(helm: str) -> None:
    result = subprocess.run(
        [helm, "install", "bhs", str(CHART), "--dry-run=client", "--namespace", "binder"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "url: http://bhs-binderhub-service:8585" in notes
    assert "access:services!service=binderhub-service" in notes
    assert "custom:binderhub-service:build" in notes
    assert "kubectl get secret bhs-binderhub-service" in notes
