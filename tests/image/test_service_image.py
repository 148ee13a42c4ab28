"""The service image, built offline by .ci/build-service-image, answers /health and /versions."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
IMAGE = "binderhub-service:test"


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


@pytest.mark.docker
def test_image_serves_health_and_versions(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / ".ci" / "build-service-image"), IMAGE], check=True, timeout=900)
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
            IMAGE,
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
