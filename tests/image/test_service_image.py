"""The service image, built offline by .ci/build-service-image: its contents, /health, /versions."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.service_image import service_image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> tuple[int, dict]:
    """Status and JSON body of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def image(docker_engine: None) -> str:
    return service_image()


def in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--entrypoint", "sh", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.docker
def test_image_runs_as_1000_from_a_working_directory_it_owns(image: str) -> None:
    """A read-only root needs an absolute data directory (the chart mounts its volume there)."""
    result = in_image(
        image,
        'id -u; id -g; pwd; stat -c %u:%g . "$BINDERHUB_SERVICE_DATA_DIR"; '
        'echo "$BINDERHUB_SERVICE_DATA_DIR"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "1000",
        "1000",
        "/srv/binderhub-service",
        "1000:1000",
        "1000:1000",
        "/srv/binderhub-service/data",
    ]


@pytest.mark.docker
def test_image_has_git_and_ca_certificates_and_no_installer(image: str) -> None:
    result = in_image(image, "git --version && test -s /etc/ssl/certs/ca-certificates.crt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("git version")
    for module in ("pip", "setuptools"):
        for python in ("python3", "/opt/binderhub-service/bin/python"):
            result = in_image(image, f"{python} -c 'import {module}'")
            assert result.returncode != 0, f"{python} can import {module}"
    assert in_image(image, "command -v pip pip3").stdout == ""


@pytest.mark.docker
def test_image_serves_health_and_versions(image: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.py"
    config.write_text(
        f"c.BinderHubService.ip = '127.0.0.1'\n"
        f"c.BinderHubService.port = {port}\n"
        "c.BinderHubService.use_registry = False\n"
        "c.BinderHubService.executor_class = 'local'\n"
        "c.BinderHubService.auth_enabled = False\n"
        "c.BinderHubService.data_dir = '/tmp/binderhub-service-data'\n"
    )
    tmp_path.chmod(0o755)
    config.chmod(0o644)
    name = f"bhs-image-test-{port}"
    subprocess.run(
        [
            "docker",
            "run",
            "--detach",
            "--rm",
            "--name",
            name,
            "--network=host",
            "--volume",
            f"{tmp_path}:/etc/binderhub-service:ro",
            image,
        ],
        check=True,
        timeout=60,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, health = get_json(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # The image holds no container engine: the local executor's check fails
        # and says so, which is what /health is for.
        assert status == 503
        assert health["ok"] is False
        assert [c["service"] for c in health["checks"]] == ["executor"]
        status, versions = get_json(f"http://127.0.0.1:{port}/versions")
        assert status == 200
        assert set(versions) == {"builder", "binderhub-service"}
    finally:
        subprocess.run(["docker", "rm", "--force", name], check=False, capture_output=True)
