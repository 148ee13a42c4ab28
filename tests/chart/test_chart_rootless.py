"""The chart's rootless BuildKit build daemon: no privilege, no host path, PodSecurity.

Rendered with the real helm binary and validated against Kubernetes' schemas;
no cluster runs here, so these tests prove what the manifests say, not that a
kubelet runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from chart_helpers import Render, helm_notes, validate

ROOTLESS = {"buildDaemon": {"mode": "rootlessBuildkit"}}
LOCALHOST_PROFILES = {
    "buildDaemon": {
        "mode": "rootlessBuildkit",
        "rootlessBuildkit": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/buildkit.json"},
            "appArmorProfile": {"type": "Localhost", "localhostProfile": "buildkit"},
        },
    }
}
# Capabilities the PodSecurity `baseline` level lets a container add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "DaemonSet"):
            yield manifest["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def baseline_violations(spec: dict[str, Any]) -> list[str]:
    """What keeps a pod from the PodSecurity `baseline` level (the checks a pod
    spec of this chart can fail: host namespaces and paths, privilege, added
    capabilities, Unconfined seccomp or AppArmor)."""
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(key)
    found += [f"hostPath {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
    contexts = [spec.get("securityContext", {})] + [
        c.get("securityContext", {}) for c in containers(spec)
    ]
    for context in contexts:
        if context.get("privileged"):
            found.append("privileged")
        added = set(context.get("capabilities", {}).get("add", []))
        found += [f"capability {c}" for c in sorted(added - BASELINE_CAPABILITIES)]
        for profile in ("seccompProfile", "appArmorProfile"):
            if context.get(profile, {}).get("type") == "Unconfined":
                found.append(f"{profile} Unconfined")
    return found


def daemon(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (daemonset,) = [m for m in manifests if m["kind"] == "DaemonSet"]
    return daemonset


def test_rootless_mode_renders_no_privileged_container_and_no_host_path(render: Render) -> None:
    manifests = render(ROOTLESS)
    for manifest in manifests:
        validate(manifest)
    for spec in pod_specs(manifests):
        for container in containers(spec):
            assert not container.get("securityContext", {}).get("privileged")
        assert all("hostPath" not in volume for volume in spec.get("volumes", []))
    (container,) = daemon(manifests)["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "buildkitd"
    assert container["image"].endswith("-rootless")
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 1000
    assert context["privileged"] is False
    assert "docker.sock" not in str(manifests)


def test_the_dind_mode_stays_and_is_privileged(render: Render) -> None:
    spec = daemon(render())["spec"]["template"]["spec"]
    assert spec["containers"][0]["name"] == "dind"
    assert baseline_violations(spec) == [
        "hostPath socket-dir",
        "hostPath storage",
        "privileged",
    ]


def test_pod_security_level_of_each_profile_choice(render: Render) -> None:
    unconfined = daemon(render(ROOTLESS))["spec"]["template"]["spec"]
    assert baseline_violations(unconfined) == [
        "seccompProfile Unconfined",
        "appArmorProfile Unconfined",
    ]
    localhost = daemon(render(LOCALHOST_PROFILES))["spec"]["template"]["spec"]
    assert baseline_violations(localhost) == []
    context = localhost["containers"][0]["securityContext"]
    assert context["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "profiles/buildkit.json",
    }


def test_build_pods_reach_the_daemon_of_their_node_only(render: Render) -> None:
    manifests = render({**ROOTLESS, "buildNamespace": "builds"}, namespace="jhub")
    (service,) = [
        m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"].endswith("daemon")
    ]
    assert service["metadata"]["namespace"] == "builds"
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    assert service["spec"]["ports"] == [
        {"name": "buildkit", "port": 1234, "targetPort": "buildkit", "protocol": "TCP"}
    ]
    pod_labels = daemon(manifests)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    policies = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}
    ingress = policies["bhs-binderhub-service-build-daemon"]["spec"]
    assert ingress["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert ingress["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/instance": "bhs",
                            "component": "binderhub-service-build",
                        }
                    }
                }
            ],
            "ports": [{"port": 1234, "protocol": "TCP"}],
        }
    ]
    egress = policies["bhs-binderhub-service-builds-to-daemon"]["spec"]
    assert egress["policyTypes"] == ["Egress"]
    assert egress["egress"][0]["to"][0]["podSelector"]["matchLabels"]["component"] == (
        "binderhub-build-daemon"
    )
    # The builds policy still forbids everything else.
    assert policies["bhs-binderhub-service-builds"]["spec"]["ingress"] == []


def test_the_dind_mode_has_no_daemon_service_or_extra_policy(render: Render) -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in render()}
    assert ("Service", "bhs-binderhub-service-build-daemon") not in names
    assert ("NetworkPolicy", "bhs-binderhub-service-build-daemon") not in names


def test_the_daemon_port_and_arguments_are_values(render: Render) -> None:
    values = {
        "buildDaemon": {
            "mode": "rootlessBuildkit",
            "rootlessBuildkit": {"port": 8372, "extraArgs": ["--debug"]},
        }
    }
    (container,) = daemon(render(values))["spec"]["template"]["spec"]["containers"]
    assert "tcp://0.0.0.0:8372" in container["args"]
    assert container["args"][-1] == "--debug"
    assert container["ports"][0]["containerPort"] == 8372


def test_notes_warn_that_build_pods_do_not_use_the_daemon_yet(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(ROOTLESS))
    assert "build pods do not use it yet" in helm_notes(helm, values)
    values.write_text(yaml.safe_dump({}))
    assert "rootlessBuildkit" not in helm_notes(helm, values)
