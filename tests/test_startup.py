"""Start-up checks, as an operator meets them: ``binderhub-service --config FILE`` as a process.

Every bad value stops the service with exit status 1 and one line that names the
option, the value and what is allowed; never a traceback.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUILD_IMAGE, free_port

TIMESTAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def run_service(
    tmp_path: Path, *lines: str, args: list[str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the service with a config of ``lines`` (after auth off and a data folder)."""
    config = tmp_path / "config.py"
    config.write_text(
        "\n".join(
            [
                "c.BinderHubService.auth_enabled = False",
                f"c.BinderHubService.data_dir = {str(tmp_path / 'data')!r}",
                *lines,
            ]
        )
        + "\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTERHUB_", "KUBERNETES_"))
    }
    env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")
    return subprocess.run(
        [sys.executable, "-m", "binderhub_service", *(args or ["--config", str(config)])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single CRITICAL line of a refused start, checked to be the last line."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert " object at 0x" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    critical = [line for line in lines if "CRITICAL" in line]
    assert critical == [lines[-1]], result.stderr
    assert TIMESTAMP.match(lines[-1]), lines[-1]
    return lines[-1].split("CRITICAL | ", 1)[1]


REGISTRY_ALLOWED = "an http:// or https:// URL such as http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "c.BinderHubService.port = -1",
            "c.BinderHubService.port = -1 is not valid: a TCP port from 1 to 65535.",
        ),
        (
            "c.BinderHubService.port = 70000",
            "c.BinderHubService.port = 70000 is not valid: a TCP port from 1 to 65535.",
        ),
        (
            "c.BinderHubService.executor_class = 'nope'",
            "c.BinderHubService.executor_class = 'nope' is not valid: choose one of "
            "'kubernetes', 'local', or the import path of a BuildExecutor subclass.",
        ),
        (
            "c.BinderHubService.executor_class = 'kubernetes'",
            "c.BinderHubService.executor_class = 'kubernetes' is not valid: no Kubernetes "
            "cluster found",
        ),
        (
            "c.BinderHubService.db_url = 'not a database'",
            "c.BinderHubService.db_url = 'not a database' is not valid: an async SQLAlchemy URL",
        ),
        (
            "c.BinderHubService.db_url = 'postgresql://binder:hunter2@127.0.0.1/binder'",
            "c.BinderHubService.db_url = 'postgresql://binder:***@127.0.0.1/binder' is not "
            "valid: an async SQLAlchemy URL such as sqlite+aiosqlite:",
        ),
        (
            "c.LocalDockerExecutor.repo2docker_config_file = '/nonexistent/r2d_config.py'",
            "c.LocalDockerExecutor.repo2docker_config_file = '/nonexistent/r2d_config.py' is "
            "not valid: the path of an existing file (no such file).",
        ),
        (
            "c.DockerRegistry.url = 'not a url'",
            f"c.DockerRegistry.url = 'not a url' is not valid: {REGISTRY_ALLOWED}",
        ),
        (
            "c.DockerRegistry.url = '127.0.0.1:5000'",
            f"c.DockerRegistry.url = '127.0.0.1:5000' is not valid: {REGISTRY_ALLOWED}",
        ),
        (
            "c.BuildManager.build_timeout = 'soon'",
            "c.BuildManager.build_timeout is not valid: expected a float, not the str 'soon'.",
        ),
        (
            "c.LocalDockerExecutor.build_memory_limit = '512'",
            "c.LocalDockerExecutor.build_memory_limit = '512' is not valid: 0 (no limit) or "
            "at least 16M (what a build step's shell needs).",
        ),
        (
            "c.LocalDockerExecutor.build_memory_limit = 'lots'",
            "c.LocalDockerExecutor.build_memory_limit = 'lots' is not valid: bytes, or a "
            "number with a suffix K, M, G or T, such as '2G'.",
        ),
        (
            "c.BinderHubService.port = 'eighty'",
            "c.BinderHubService.port is not valid: expected an int, not the str 'eighty'.",
        ),
    ],
    ids=[
        "port-negative",
        "port-too-big",
        "executor-unknown",
        "kubernetes-without-cluster",
        "db-url-garbage",
        "db-url-sync-driver",
        "repo2docker-config-missing",
        "registry-not-a-url",
        "registry-no-scheme",
        "timeout-not-a-number",
        "step-memory-too-small",
        "step-memory-not-a-size",
        "port-not-a-number",
    ],
)
def test_a_bad_value_is_one_line_and_exit_1(tmp_path: Path, line: str, expected: str) -> None:
    message = the_one_line(run_service(tmp_path, line))
    assert message.startswith(expected), message
    assert "hunter2" not in message
    assert not (tmp_path / "data").exists(), "a refused start changes nothing"


def test_a_bad_value_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text("c.BinderHubService.auth_enabled = False\n")
    message = the_one_line(run_service(tmp_path, args=["--config", str(config), "--port=abc"]))
    assert message == "c.BinderHubService.port is not valid: expected an int, not the str 'abc'."


def test_a_config_file_with_a_syntax_error_stops_the_service(tmp_path: Path) -> None:
    message = the_one_line(run_service(tmp_path, "c.BinderHubService.port = (8585"))
    assert re.fullmatch(r"Config file '.*config\.py' line 3: syntax error: .*\.", message), message


def test_a_config_file_that_raises_stops_the_service(tmp_path: Path) -> None:
    message = the_one_line(run_service(tmp_path, "c.BinderHubService.port = PORT"))
    assert message.endswith("NameError: name 'PORT' is not defined"), message


def test_a_missing_config_file_named_on_the_command_line(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.py"
    message = the_one_line(run_service(tmp_path, args=["--config", str(missing)]))
    assert message == f"--config {str(missing)!r}: no such file."


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = the_one_line(run_service(tmp_path, f"c.BinderHubService.port = {port}"))
    assert message == (
        f"Cannot listen on 127.0.0.1:{port} (c.BinderHubService.ip, c.BinderHubService.port): "
        "the port is in use by another process."
    )


def test_an_unreachable_database(tmp_path: Path) -> None:
    """A database that cannot be reached is named (without its password), after the checks."""
    url = f"postgresql+asyncpg://binder:hunter2@127.0.0.1:{free_port()}/binder"
    result = run_service(
        tmp_path,
        f"c.BinderHubService.db_url = {url!r}",
        f"c.BinderHubService.port = {free_port()}",
        # The database is opened after the build image is found.
        f"c.LocalDockerExecutor.build_image = {BUILD_IMAGE!r}",
    )
    message = the_one_line(result)
    assert message.startswith(
        "Cannot open the database c.BinderHubService.db_url = "
        "'postgresql+asyncpg://binder:***@127.0.0.1:"
    ), message
    assert "hunter2" not in result.stderr


def test_help_tells_the_true_log_level_and_every_executor(tmp_path: Path) -> None:
    result = run_service(tmp_path, args=["--help-all"])
    assert result.returncode == 0, result.stderr
    log_level = result.stdout.split("--log-level=<Enum>", 1)[1].split("\n--", 1)[0]
    assert "Default INFO (20)" in log_level and "Default: 20" in log_level
    assert "--KubernetesExecutor.namespace=" in result.stdout
    assert "--LocalDockerExecutor.repo2docker_config_file=" in result.stdout


def test_generate_config_writes_every_executor(tmp_path: Path) -> None:
    result = run_service(tmp_path, args=["--generate-config"])
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "binderhub_service_config.py").read_text()
    assert "# c.KubernetesExecutor.namespace = " in written
    assert "# c.LocalDockerExecutor.repo2docker_config_file = " in written
