"""The pod runner's translation of a pod spec into ``docker run`` arguments (no engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pod_runner import SERVICE_ACCOUNT_DIR, Cluster, PodRunner, PodSpecError

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "stringData": {"token": "s3cret", "config.json": '{"auths": {}}'},
}
CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings"},
    "data": {"mode": "fast"},
}
CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}}


def runner(tmp_path: Path) -> PodRunner:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    cluster = Cluster(
        namespace="jhub",
        api_host="127.0.0.1",
        api_port=6443,
        ca_cert=ca,
        token="sa-token",
        objects=[SECRET, CONFIG_MAP, CLAIM],
        node_root=tmp_path / "node",
    )
    return PodRunner(cluster, tmp_path / "kubelet", images={"example/app:1": "app:local"})


def pod(**spec: Any) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "example/app:1",
        "command": ["app", "--name", "$(POD_NAME)"],
        "args": ["--mode", "$(MODE)"],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "MODE",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
            },
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data", "mountPath": "/data"},
            {"name": "socket", "mountPath": "/var/run/docker.sock"},
        ],
    }
    return {
        "metadata": {"name": "app-0"},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
            "containers": [container],
            "volumes": [
                {
                    "name": "creds",
                    "secret": {
                        "secretName": "creds",
                        "items": [{"key": "config.json", "path": "config.json"}],
                    },
                },
                {"name": "tmp", "emptyDir": {}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "socket", "hostPath": {"path": "/var/run/docker.sock"}},
            ],
            **spec,
        },
    }


def run_args(tmp_path: Path, manifest: dict[str, Any]) -> tuple[list[str], Path]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pod_runner = runner(tmp_path)
    args = pod_runner.docker_args(manifest, manifest["spec"]["containers"][0], run_dir)
    return args, run_dir


def test_a_pod_becomes_docker_run_arguments(tmp_path: Path) -> None:
    args, run_dir = run_args(tmp_path, pod())
    image = args.index("app:local")
    assert args[image + 1 :] == ["--name", "app-0", "--mode", "fast"]
    options = args[:image]
    for flag in (
        ["--network=host"],
        ["--pull=never"],
        ["--user", "1000:1000"],
        ["--group-add", "2000"],
        ["--read-only"],
        ["--cap-drop", "ALL"],
        ["--security-opt", "no-new-privileges"],
        ["--entrypoint", "app"],
        ["--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777"],
        ["--volume", "/var/run/docker.sock:/var/run/docker.sock:rw"],
        ["--volume", f"{run_dir / 'volumes' / 'creds'}:/etc/creds:ro"],
        ["--volume", f"{tmp_path / 'node' / 'claims' / 'jhub' / 'data'}:/data:rw"],
        ["--volume", f"{run_dir / 'serviceaccount'}:{SERVICE_ACCOUNT_DIR}:ro"],
    ):
        assert any(options[i : i + len(flag)] == flag for i in range(len(options))), flag
    # Secrets reach the container as files and through an env file, never as arguments.
    assert "s3cret" not in " ".join(args)
    env = dict(line.split("=", 1) for line in (run_dir / "env").read_text().splitlines())
    assert env["TOKEN"] == "s3cret"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert [p.name for p in (run_dir / "volumes" / "creds").iterdir()] == ["config.json"]
    assert (run_dir / "serviceaccount" / "token").read_text() == "sa-token"
    assert (run_dir / "serviceaccount" / "namespace").read_text() == "jhub"
    claim = tmp_path / "node" / "claims" / "jhub" / "data"
    assert claim.stat().st_gid == 2000


def test_no_token_without_automount(tmp_path: Path) -> None:
    args, _ = run_args(tmp_path, pod(automountServiceAccountToken=False))
    assert not any(SERVICE_ACCOUNT_DIR in arg for arg in args)


@pytest.mark.parametrize(
    "volume",
    [
        {"name": "creds", "projected": {"sources": []}},
        {"name": "creds", "secret": {"secretName": "missing"}},
        {"name": "creds", "persistentVolumeClaim": {"claimName": "missing"}},
    ],
)
def test_what_it_cannot_do_as_a_kubelet_fails(tmp_path: Path, volume: dict[str, Any]) -> None:
    manifest = pod()
    manifest["spec"]["volumes"][0] = volume
    with pytest.raises(PodSpecError):
        run_args(tmp_path, manifest)


def test_run_as_root_with_run_as_non_root_fails(tmp_path: Path) -> None:
    manifest = pod(securityContext={"runAsUser": 0, "runAsNonRoot": True})
    with pytest.raises(PodSpecError, match="runAsNonRoot"):
        run_args(tmp_path, manifest)
