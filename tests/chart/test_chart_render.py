"""The Helm chart: lint, render with several value sets, validate every manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    Render,
    helm_notes,
    helm_template_error,
    howto_hub_values,
    howto_values,
    notes_snippet,
    validate,
)

from tests.docs_snippets import code_blocks

REGISTRY = {
    "registry": {"url": "https://registry.example.org", "username": "u", "password": "p"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "z2jh-howto": howto_values(),
    "no-daemonset": {"buildDaemon": {"enabled": False}, "networkPolicy": {"enabled": False}},
    "registry": REGISTRY,
    "build-namespace": {**REGISTRY, "buildNamespace": "binder-builds"},
    "no-persistence": {"persistence": {"enabled": False}},
    "step-limits": {"buildDaemon": {"stepLimits": {"memory": "4G", "cpu": 1.5}}},
    "database-secret": {"databaseUrlSecret": {"name": "bhs-db", "key": "url"}},
    "every-egress-rule": {
        "networkPolicy": {
            "egressAllowRules": {"privateIPs": True, "cloudMetadataServer": True},
            "extraBlockedCidrs": ["203.0.113.10/32", "2001:db8::/32"],
        }
    },
    "custom-names": {
        "fullnameOverride": "builder",
        "jupyterhubServiceName": "images",
        "service": {"port": 9000},
        "networkPolicy": {"extraBlockedCidrs": ["203.0.113.10/32"]},
        "config": {
            "KubernetesExecutor": {"sticky_builds": True, "resources": {"requests": {"cpu": "1"}}}
        },
        "extraConfig": {"BinderHubService": {"image_prefix": "registry.example.org/x/"}},
        "imagePullSecrets": ["quay-pull", {"name": "mirror-pull"}],
        "podLabels": {"team": "images"},
        "podAnnotations": {"example.org/owner": "images"},
        "buildDaemon": {
            "extraArgs": ["--registry-mirror=https://mirror.example.org"],
            "resources": {"limits": {"memory": "8Gi"}},
            "imagePullSecrets": [{"name": "hub-pull"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "pool", "operator": "Exists"}]}
                        ]
                    }
                }
            },
        },
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
    manifests = render(VALUE_SETS[name], namespace="jhub")
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
            "PersistentVolumeClaim",
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
        # A build's git credential: created, owned by its pod (patch), deleted; never read.
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
    assert container["image"] == "ghcr.io/binderhub-service/binderhub-service:" + app_version()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "checksum/config" in pod["metadata"]["annotations"]
    assert pod["spec"]["serviceAccountName"] == "bhs-binderhub-service"
    # Zero to JupyterHub's hub NetworkPolicy admits pods with this label.
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    env = {e["name"]: e for e in container["env"]}
    # What jupyterhub.services.auth needs to authenticate users as an external
    # service named `binder`, the name jupyterhub-fancy-profiles calls.
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/services/binder/"
    assert env["JUPYTERHUB_CLIENT_ID"]["value"] == "service-binder"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"]["value"] == "/services/binder/oauth_callback"
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "api-token"
    cookie = env["BINDERHUB_SERVICE_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in render() if s["kind"] == "Secret"}
    assert bytes.fromhex(secrets[cookie["name"]]["stringData"][cookie["key"]])


def app_version() -> str:
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def test_the_default_image_is_this_projects(render: Render) -> None:
    """Not another program's image (BinderHub's): the project's name, tagged with appVersion."""
    from binderhub_service import __version__

    assert app_version() == __version__
    image = by_kind(render())["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.rsplit(":", 1) == ["ghcr.io/binderhub-service/binderhub-service", __version__]


def test_build_pods_run_the_services_own_image(render: Render) -> None:
    """The build image is the image the chart runs the service with, unless configured."""
    from binderhub_service.executors.pod import SERVICE_IMAGE

    def build_image(values: dict[str, Any]) -> str:
        return service_config(render(values))["KubernetesExecutor"]["build_image"]

    assert build_image({}) == SERVICE_IMAGE
    image = {"repository": "registry.example.org/bhs", "tag": "1.2"}
    assert build_image({"image": image}) == "registry.example.org/bhs:1.2"
    configured = {"config": {"KubernetesExecutor": {"build_image": "bhs:mine"}}}
    assert build_image({"image": image, **configured}) == "bhs:mine"


def test_probes_never_restart_for_another_services_outage(render: Render) -> None:
    """Liveness and start-up ask livez; only readiness asks health (registry, Kubernetes)."""
    container = by_kind(render())["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/services/binder/livez"
    assert container["livenessProbe"]["httpGet"]["path"] == "/services/binder/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/services/binder/health"
    startup = container["startupProbe"]
    # Migrations run before the port opens: the start-up probe waits long for them.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    # health runs its checks with a 10 s timeout each: readiness waits for them.
    assert container["readinessProbe"]["timeoutSeconds"] > 10


def test_persistence_is_on_by_default(render: Render) -> None:
    kinds = by_kind(render({"persistence": {"size": "5Gi", "storageClass": "ssd"}}))
    claim = kinds["PersistentVolumeClaim"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "ssd",
        "resources": {"requests": {"storage": "5Gi"}},
    }
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in (
        pod["volumes"]
    )
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    # Where the image's BINDERHUB_SERVICE_DATA_DIR points, and the service's data_dir.
    assert mounts["data"] == "/srv/binderhub-service/data"
    config = service_config(render())
    assert config["BinderHubService"]["data_dir"] == "/srv/binderhub-service/data"
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    assert "BINDERHUB_SERVICE_DATA_DIR=/srv/binderhub-service/data" in dockerfile


def test_without_persistence_the_data_dir_is_an_empty_dir(render: Render) -> None:
    kinds = by_kind(render({"persistence": {"enabled": False}}))
    assert "PersistentVolumeClaim" not in kinds
    volumes = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "emptyDir": {}} in volumes


def test_database_url_from_a_secret(render: Render, tmp_path: Path) -> None:
    from traitlets.config import PyFileConfigLoader

    manifests = render({"databaseUrlSecret": {"name": "bhs-db", "key": "url"}})
    container = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["BINDERHUB_SERVICE_DB_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "bhs-db", "key": "url"}
    }
    secret = by_kind(manifests)["Secret"]
    (tmp_path / "config.py").write_text(secret["stringData"]["config.py"])
    (tmp_path / "values.json").write_text(secret["stringData"]["values.json"])
    url = "postgresql+asyncpg://u:p@db.example.org/binder"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BINDERHUB_SERVICE_DB_URL", url)
        config = PyFileConfigLoader("config.py", path=str(tmp_path)).load_config()
    assert config.BinderHubService.db_url == url


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
        "base_url": "/services/binder/",
        "ip": "0.0.0.0",
        "port": 8585,
        "executor_class": "kubernetes",
        "data_dir": "/srv/binderhub-service/data",
    }
    assert config["BuildManager"] == {"max_concurrent_builds": 7, "build_timeout": 900}
    executor = config["KubernetesExecutor"]
    assert executor["namespace"] == "binder"
    assert executor["build_image"] == "r2d:custom"
    assert executor["delete_finished_pods_after"] == 30
    assert executor["docker_socket_host_path"] == (
        "/var/run/binderhub-service/binder-bhs/docker.sock"
    )
    assert executor["extra_labels"] == {"app.kubernetes.io/instance": "bhs"}
    assert "registry_secret_name" not in executor
    # No registry URL: none configured (the service then refuses to start).
    assert "DockerRegistry" not in config


def test_registry_url_reaches_the_service(render: Render) -> None:
    """registry.url is DockerRegistry.url; image_prefix, left empty, is derived from it."""
    config = service_config(render({"registry": {"url": "https://registry.example.org"}}))
    assert config["DockerRegistry"] == {"url": "https://registry.example.org"}
    assert "image_prefix" not in config["BinderHubService"]


def test_image_prefix_derives_from_the_registry_url(render: Render, tmp_path: Path) -> None:
    from binderhub_service.app import BinderHubService

    secret = by_kind(render({"registry": {"url": "https://registry.example.org"}}))["Secret"]
    (tmp_path / "config.py").write_text(secret["stringData"]["config.py"])
    (tmp_path / "values.json").write_text(secret["stringData"]["values.json"])
    app = BinderHubService(config_file=str(tmp_path / "config.py"))
    app.load_config_file(app.config_file)
    app.init_registry()
    assert app.registry.url == "https://registry.example.org"
    assert app.image_prefix == "registry.example.org/binder-"


CHART_OWNED = [
    ("config", "DockerRegistry", "url", "registry.url"),
    ("config", "KubernetesExecutor", "namespace", "buildNamespace"),
    ("config", "BinderHubService", "base_url", "jupyterhubServiceName"),
    ("config", "BinderHubService", "db_url", "databaseUrlSecret"),
    ("config", "BinderHubService", "data_dir", "persistence"),
    ("extraConfig", "BinderHubService", "port", "service.port"),
    ("extraConfig", "KubernetesExecutor", "docker_socket_host_path", "buildDaemon.socketHostDir"),
    ("config", "KubernetesExecutor", "build_memory_limit", "buildDaemon.stepLimits.memory"),
    ("extraConfig", "KubernetesExecutor", "build_cpu_limit", "buildDaemon.stepLimits.cpu"),
]


@pytest.mark.parametrize(("source", "cls", "trait", "use"), CHART_OWNED)
def test_chart_owned_traits_are_refused(
    helm: str, tmp_path: Path, source: str, cls: str, trait: str, use: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({source: {cls: {trait: "x"}}}))
    error = helm_template_error(helm, values)
    assert f"{source}.{cls}.{trait} is set by the chart: use {use} instead" in error


def test_config_file_sets_traits(render: Render, tmp_path) -> None:
    from traitlets.config import PyFileConfigLoader

    secret = by_kind(render(REGISTRY))["Secret"]
    (tmp_path / "config.py").write_text(secret["stringData"]["config.py"])
    (tmp_path / "values.json").write_text(secret["stringData"]["values.json"])
    config = PyFileConfigLoader("config.py", path=str(tmp_path)).load_config()
    assert config.BinderHubService.port == 8585
    assert config.BinderHubService.executor_class == "kubernetes"
    assert config.DockerRegistry.url == "https://registry.example.org"
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


def test_build_namespace(render: Render) -> None:
    """Build pods, their Role, policy, daemon and registry Secret live in buildNamespace."""
    manifests = render({**REGISTRY, "buildNamespace": "binder-builds"}, namespace="jhub")
    where = {
        (m["kind"], m["metadata"].get("namespace", "jhub"), m["metadata"]["name"])
        for m in manifests
    }
    registry_secret = "bhs-binderhub-service-registry"
    assert {
        ("Role", "binder-builds", "bhs-binderhub-service"),
        ("RoleBinding", "binder-builds", "bhs-binderhub-service"),
        ("NetworkPolicy", "binder-builds", "bhs-binderhub-service-builds"),
        ("DaemonSet", "binder-builds", "bhs-binderhub-service-build-daemon"),
        ("Secret", "binder-builds", registry_secret),
        ("Secret", "jhub", registry_secret),
        ("Deployment", "jhub", "bhs-binderhub-service"),
    } <= where
    binding = by_kind(manifests)["RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "bhs-binderhub-service", "namespace": "jhub"}
    ]
    assert service_config(manifests)["KubernetesExecutor"]["namespace"] == "binder-builds"


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


def test_daemonset_values(render: Render) -> None:
    values = VALUE_SETS["custom-names"]["buildDaemon"]
    spec = by_kind(render(VALUE_SETS["custom-names"]))["DaemonSet"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["args"][-1] == "--registry-mirror=https://mirror.example.org"
    assert container["resources"] == values["resources"]
    assert spec["imagePullSecrets"] == [{"name": "hub-pull"}]
    assert spec["affinity"] == values["affinity"]


def test_pod_labels_annotations_and_pull_secrets(render: Render) -> None:
    pod = by_kind(render(VALUE_SETS["custom-names"]))["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "images"
    assert pod["metadata"]["annotations"]["example.org/owner"] == "images"
    # Names and {name: ...} objects alike.
    assert pod["spec"]["imagePullSecrets"] == [{"name": "quay-pull"}, {"name": "mirror-pull"}]


def egress(render: Render, rules: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    values = {"networkPolicy": {"egressAllowRules": rules or {}}}
    policy = by_kind(render(values))["NetworkPolicy"]
    assert policy["spec"]["ingress"] == []
    rules_out: list[dict[str, Any]] = policy["spec"]["egress"]
    return rules_out


def dns_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules if {"port": 53, "protocol": "UDP"} in rule.get("ports", [])]


def test_network_policy_defaults(render: Render) -> None:
    rules = egress(render)
    dns = dns_rules(rules)
    # DNS is reachable wherever a cluster serves it: the metadata server (GKE
    # Cloud DNS), kube-system pods (whatever their labels), private addresses
    # (a ClusterIP kube-dns, NodeLocal DNSCache).
    assert [rule["to"] for rule in dns] == [
        [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        [
            {"ipBlock": {"cidr": cidr}}
            for cidr in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        ],
    ]
    (public,) = [rule for rule in rules if "ports" not in rule]
    assert public["to"] == [
        {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"],
            }
        },
        {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}},
    ]


def test_network_policy_toggles(render: Render) -> None:
    none = dict.fromkeys(
        [
            "dnsPortsCloudMetadataServer",
            "dnsPortsKubeSystemNamespace",
            "dnsPortsPrivateIPs",
            "nonPrivateIPs",
            "privateIPs",
            "cloudMetadataServer",
        ],
        False,
    )
    assert egress(render, none) == []
    assert egress(render, {**none, "privateIPs": True}) == [
        {
            "to": [
                {"ipBlock": {"cidr": cidr}}
                for cidr in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
            ]
        }
    ]
    assert egress(render, {**none, "cloudMetadataServer": True}) == [
        {
            "to": [
                {"ipBlock": {"cidr": "169.254.169.254/32"}},
                {"ipBlock": {"cidr": "fd00:ec2::254/128"}},
            ]
        }
    ]


def test_network_policy_extra_blocked_and_allowed(render: Render) -> None:
    registry = {"to": [{"ipBlock": {"cidr": "10.0.5.20/32"}}], "ports": [{"port": 443}]}
    policy = by_kind(
        render(
            {
                "networkPolicy": {
                    "extraBlockedCidrs": ["203.0.113.10/32", "2001:db8::/32"],
                    "extraEgress": [registry],
                }
            }
        )
    )["NetworkPolicy"]
    rules = policy["spec"]["egress"]
    (public,) = [rule for rule in rules if "ports" not in rule]
    v4, v6 = (block["ipBlock"] for block in public["to"])
    assert "203.0.113.10/32" in v4["except"]
    assert "2001:db8::/32" in v6["except"]
    assert rules[-1] == registry


def test_custom_names(render: Render) -> None:
    manifests = render(VALUE_SETS["custom-names"])
    for manifest in manifests:
        assert manifest["metadata"]["name"].startswith("builder")
    config = service_config(manifests)
    assert config["BinderHubService"]["port"] == 9000
    assert config["BinderHubService"]["base_url"] == "/services/images/"
    assert config["BinderHubService"]["image_prefix"] == "registry.example.org/x/"
    assert config["KubernetesExecutor"]["sticky_builds"] is True


def host_paths(manifests: list[dict[str, Any]]) -> set[str]:
    """Every node folder a release uses: its pods' hostPath volumes and its build pods' socket."""
    paths = {
        volume["hostPath"]["path"]
        for manifest in manifests
        if manifest["kind"] in ("DaemonSet", "Deployment")
        for volume in manifest["spec"]["template"]["spec"].get("volumes", [])
        if "hostPath" in volume
    }
    socket = service_config(manifests)["KubernetesExecutor"]["docker_socket_host_path"]
    return {*paths, socket.rsplit("/", 1)[0]}


def test_two_releases_share_no_name_or_host_path(render: Render) -> None:
    values = {**REGISTRY, "buildNamespace": "builds"}
    one = render(values, release="one", namespace="jhub")
    two = render(values, release="two", namespace="jhub")

    def names(manifests: list[dict[str, Any]]) -> set[str]:
        return {
            "/".join([m["kind"], m["metadata"].get("namespace", "jhub"), m["metadata"]["name"]])
            for m in manifests
        }

    assert len(names(one)) == len(one) == len(two) == 11
    assert not names(one) & names(two)
    assert len(host_paths(one)) == 2
    assert not host_paths(one) & host_paths(two)
    # Each release finds only its own build pods and build daemons.
    first, second = (service_config(m)["KubernetesExecutor"] for m in (one, two))
    assert first["extra_labels"] != second["extra_labels"]
    assert first["build_daemon_label_selector"] != second["build_daemon_label_selector"]


def test_subchart_with_global_values(helm: str, tmp_path: Path) -> None:
    """An umbrella chart (helm always passes `global`) renders this chart as a subchart."""
    umbrella = tmp_path / "umbrella"
    (umbrella / "charts").mkdir(parents=True)
    shutil.copytree(CHART, umbrella / "charts" / "binderhub-service")
    (umbrella / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "umbrella",
                "version": "1.0.0",
                "dependencies": [{"name": "binderhub-service", "version": "*"}],
            }
        )
    )
    (umbrella / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "mirror.example.org", "storageClass": "ssd"},
                "binderhub-service": {"registry": {"url": "https://registry.example.org"}},
            }
        )
    )
    result = subprocess.run(
        [helm, "template", "hub", str(umbrella), "--namespace", "jhub"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert "Deployment" in by_kind(manifests)
    for manifest in manifests:
        validate(manifest)


def test_notes_print_the_howtos_hub_snippet(helm: str, tmp_path: Path) -> None:
    """Step 4 of the how-to is what NOTES print for the values of step 2 (release bhs in jhub)."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(howto_values()))
    notes = helm_notes(helm, values)
    assert notes_snippet(notes) == howto_hub_values()
    assert "kubectl get secret bhs-binderhub-service --namespace jhub" in notes
    assert "interNamespaceAccessLabels" in notes
    assert "WARNING" not in notes


def test_notes_snippet_matches_the_service(render: Render, helm: str, tmp_path: Path) -> None:
    """The snippet's service name, URL and scopes are those the rendered service uses."""
    from binderhub_service.auth import ServiceAuth

    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(howto_values()))
    hub = notes_snippet(helm_notes(helm, values))["hub"]
    manifests = render(howto_values(), namespace="jhub")
    kinds = by_kind(manifests)
    ((name, service),) = hub["services"].items()
    assert name == "binder"
    port = kinds["Service"]["spec"]["ports"][0]["port"]
    assert service["url"] == f"http://{kinds['Service']['metadata']['name']}.jhub.svc:{port}"
    env = {
        e["name"]: e.get("value")
        for e in kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["JUPYTERHUB_SERVICE_NAME"] == name
    # JupyterHub registers a service's OAuth client under these, from its name.
    assert env["JUPYTERHUB_CLIENT_ID"] == f"service-{name}"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == f"/services/{name}/oauth_callback"
    roles = hub["loadRoles"]
    assert sorted(roles) == [f"{name}-service", f"{name}-users"]
    build_scope = ServiceAuth.build_scope.default_value
    assert roles[f"{name}-users"]["scopes"] == [f"access:services!service={name}", build_scope]
    # Garbage collection lists running servers, and sharing reads users' groups,
    # with the service's own token.
    assert roles[f"{name}-service"] == {
        "description": "Let binderhub-service see running servers' images and users' groups",
        "scopes": ["list:users", "read:servers", "read:users:groups"],
        "services": [name],
    }
    assert build_scope in hub["config"]["JupyterHub"]["custom_scopes"]


def test_notes_warn_about_host_docker_and_a_missing_registry(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"buildDaemon": {"enabled": False}}))
    notes = helm_notes(helm, values)
    assert "registry.url is empty" in notes
    assert "which no NetworkPolicy restricts" in notes


def test_step_limits_run_beside_the_build_daemon(render: Render) -> None:
    manifests = render({"buildDaemon": {"stepLimits": {"memory": "4G", "cpu": 1.5}}})
    kinds = by_kind(manifests)
    pod = kinds["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    dind, limiter, _ = pod["containers"]
    assert dind["name"] == "dind"
    assert limiter["name"] == "step-limits"
    assert (
        limiter["image"]
        == kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert limiter["command"] == [
        "python",
        "-m",
        "binderhub_service.step_limits",
        "--process=dockerd",
        "--memory=4G",
        "--cpu=1.5",
    ]
    assert limiter["securityContext"] == {"privileged": True, "runAsUser": 0}
    executor = service_config(manifests)["KubernetesExecutor"]
    assert executor["build_memory_limit"] == "4G"
    assert executor["build_cpu_limit"] == 1.5


def test_the_how_to_step_limits_render(render: Render) -> None:
    [block] = code_blocks("howto/build-limits.md", "yaml")
    manifests = render(yaml.safe_load(block.body))
    pod = by_kind(manifests)["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["containers"][1]["command"][-2:] == ["--memory=2G", "--cpu=1.5"]
    assert service_config(manifests)["KubernetesExecutor"]["build_memory_limit"] == "2G"


def test_step_limits_need_the_build_daemon(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"buildDaemon": {"enabled": False, "stepLimits": {"memory": "2G"}}})
    )
    assert "buildDaemon.stepLimits needs buildDaemon.enabled" in helm_template_error(helm, values)


def test_step_limits_need_the_dind_build_daemon(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"buildDaemon": {"mode": "rootlessBuildkit", "stepLimits": {"memory": "2G"}}}
        )
    )
    assert "applies to the dind build daemon only" in helm_template_error(helm, values)


def test_no_step_limits_by_default(render: Render) -> None:
    manifests = render()
    pod = by_kind(manifests)["DaemonSet"]["spec"]["template"]["spec"]
    assert "shareProcessNamespace" not in pod
    assert [c["name"] for c in pod["containers"]] == ["dind", "cache-prune"]
    assert "build_memory_limit" not in service_config(manifests)["KubernetesExecutor"]


def test_the_build_daemons_cache_is_pruned_by_a_sidecar(render: Render) -> None:
    spec = by_kind(render())["DaemonSet"]["spec"]["template"]["spec"]
    dind, prune = spec["containers"]
    assert prune["name"] == "cache-prune" and prune["image"] == dind["image"]
    env = {e["name"]: e["value"] for e in prune["env"]}
    assert env == {
        "DOCKER_HOST": "unix:///var/run/dind/docker.sock",
        "KEEP_STORAGE": "20GB",
        "PRUNE_INTERVAL": "3600",
    }
    assert 'docker builder prune --force --keep-storage "$KEEP_STORAGE"' in prune["command"][2]
    assert prune["volumeMounts"] == [{"name": "socket-dir", "mountPath": "/var/run/dind"}]
    assert "privileged" not in prune["securityContext"]

    values = {"buildDaemon": {"cachePrune": {"keepStorage": "5GB", "intervalSeconds": 600}}}
    spec = by_kind(render(values))["DaemonSet"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in spec["containers"][1]["env"]}
    assert (env["KEEP_STORAGE"], env["PRUNE_INTERVAL"]) == ("5GB", "600")

    values = {"buildDaemon": {"cachePrune": {"enabled": False}}}
    spec = by_kind(render(values))["DaemonSet"]["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["dind"]


def test_scheduled_garbage_collection_is_off_and_dry_by_default(render: Render) -> None:
    assert service_config(render())["GarbageCollector"] == {
        "interval_hours": 0,
        "scheduled_dry_run": True,
    }
    config = service_config(
        render({"config": {"GarbageCollector": {"interval_hours": 24, "scheduled_dry_run": False}}})
    )
    assert config["GarbageCollector"] == {"interval_hours": 24, "scheduled_dry_run": False}
