"""Shared fixtures: real components on loopback.

The Docker engine (without a bridge network) and the base image are started by
``.ci/start-services``; the fixtures here start registries, git servers and the
service itself, each on a free loopback port, and stop them afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.rootless import engine_registry, rootless_engine
from tests.service_image import DEFAULT_TAG, service_image

POSTGRES_URL = os.environ.get(
    "BHS_TEST_POSTGRES_URL",
    "postgresql+asyncpg://binderhub_test:binderhub_test@127.0.0.1:5432/binderhub_test",
)

BASE_IMAGE = os.environ.get("BHS_TEST_BASE_IMAGE", "binderhub-service-test/base:bookworm")
# Test repositories, registries and emulated hosts all listen on loopback, which
# the service refuses to reach by default: every service config the tests,
# benchmarks and examples write allows all networks with this line.
LOOPBACK_NETWORKS = "c.RepoProviderCatalog.denied_networks = []"
ROOT = Path(__file__).resolve().parent.parent
# The rootless engine's fixtures (tests/rootless.py), for every test module.
__all__ = ["engine_registry", "rootless_engine"]
# The image build containers run: the service image, built once per test run.
BUILD_IMAGE = os.environ.get("BHS_TEST_SERVICE_IMAGE", DEFAULT_TAG)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine (started by .ci/start-services)."""
    result = subprocess.run(["docker", "info"], capture_output=True)
    if result.returncode != 0:
        pytest.fail("No Docker engine answers: run .ci/start-services first.")


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """The local image test repositories build FROM (no image can be pulled here)."""
    result = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    if result.returncode != 0:
        pytest.fail(f"Base image {BASE_IMAGE} is missing: run .ci/start-services first.")
    return BASE_IMAGE


@dataclass
class Registry:
    url: str
    host: str

    def tags(self, repository: str) -> list[str]:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/{repository}/tags/list") as r:
                return json.load(r).get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise


def start_registry(
    root: Path, auth_lines: str = "", delete: bool = True
) -> tuple[subprocess.Popen, Registry]:
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: {root / "data"}
              delete:
                enabled: {str(delete).lower()}
            http:
              addr: 127.0.0.1:{port}
            """
        )
        + auth_lines
    )
    with open(root / "registry.log", "w") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    registry = Registry(url=f"http://127.0.0.1:{port}", host=f"127.0.0.1:{port}")
    wait_for_http(registry.url + "/v2/", proc=proc)
    return proc, registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry (CNCF distribution) on a free loopback port, anonymous access."""
    root = tmp_path_factory.mktemp("registry")
    proc, reg = start_registry(root)
    yield reg
    stop_process(proc)


@dataclass
class GitServer:
    root: Path
    port: int

    def make_repo(self, name: str, files: dict[str, str]) -> tuple[str, str]:
        """Create (or add a commit to) a bare repository; return its URL and the new sha."""
        work = self.root / "work" / name
        bare = self.root / "repos" / f"{name}.git"
        if not bare.exists():
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
            subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
            subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", "main"], check=True)
        for path, content in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git = ["git", "-C", str(work), "-c", "user.name=test", "-c", "user.email=test@localhost"]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "change"], check=True)
        subprocess.run([*git, "push", "-q", "origin", "main"], check=True)
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        return self.url(name), sha

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"


def start_git_daemon(root: Path) -> tuple[subprocess.Popen, GitServer]:
    """A git daemon on a free loopback port serving the bare repositories in ``root/repos``."""
    (root / "repos").mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={root / 'repos'}",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--reuseaddr",
            str(root / "repos"),
        ],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, GitServer(root, port)
        time.sleep(0.05)
    stop_process(proc)
    raise TimeoutError("git daemon did not start")


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A git daemon on a free loopback port serving bare repositories."""
    proc, server = start_git_daemon(tmp_path_factory.mktemp("git"))
    yield server
    stop_process(proc)


@pytest.fixture(scope="session")
def build_image(docker_engine: None) -> str:
    """The image build containers run: the service's image, built once per run from
    this checkout with ``.ci/build-service-image`` (or ``$BHS_TEST_SERVICE_IMAGE``)."""
    image = service_image()
    assert image == BUILD_IMAGE
    return image


@pytest.fixture(scope="session")
def r2d_config(tmp_path_factory: pytest.TempPathFactory, build_image: str) -> str:
    """repo2docker config for builds here: no network in builds, git sources only.

    Builds run in containers of the ``build_image`` fixture, which this one builds first."""
    path = tmp_path_factory.mktemp("r2d") / "repo2docker_config.py"
    path.write_text(
        textwrap.dedent(
            """\
            from repo2docker.contentproviders import Git
            c.DockerEngine.extra_buildx_build_args = ["--network=none"]
            c.Repo2Docker.content_providers = [Git]
            """
        )
    )
    return str(path)


@dataclass
class ServiceProcess:
    """A ``binderhub-service`` subprocess on loopback."""

    url: str
    proc: subprocess.Popen
    config_file: Path
    log_file: Path

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_file.read_text()

    def build_url(self, provider: str, spec: str) -> str:
        return f"{self.url}build/{provider}/{spec}?build_only=true"

    def git_build_url(self, repo_url: str, ref: str) -> str:
        return self.build_url("git", urllib.parse.quote(repo_url, safe="") + "/" + ref)


def launch_service(config: Path, workdir: Path, url: str) -> ServiceProcess:
    """Run ``binderhub-service --config CONFIG`` in ``workdir``; return once it answers."""
    log_file = config.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "binderhub_service", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    service = ServiceProcess(url=url, proc=proc, config_file=config, log_file=log_file)
    wait_for_http(url + "versions", proc=proc)
    return service


@pytest.fixture
def service_factory(
    tmp_path: Path, r2d_config: str, docker_engine: None
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start ``binderhub-service --config FILE`` with extra config lines; stopped after the test."""
    started: list[ServiceProcess] = []

    def start(
        *config_lines: str, registry: Registry | None = None, base_url: str = "/"
    ) -> ServiceProcess:
        port = free_port()
        lines = [
            "c.BinderHubService.ip = '127.0.0.1'",
            f"c.BinderHubService.port = {port}",
            f"c.BinderHubService.base_url = {base_url!r}",
            f"c.LocalDockerExecutor.repo2docker_config_file = {r2d_config!r}",
            f"c.LocalDockerExecutor.build_image = {BUILD_IMAGE!r}",
            "c.BinderHubService.auth_enabled = False",
            LOOPBACK_NETWORKS,
        ]
        if registry is not None:
            lines.append(f"c.DockerRegistry.url = {registry.url!r}")
        lines += config_lines
        config = tmp_path / f"config-{port}.py"
        config.write_text("\n".join(lines) + "\n")
        service = launch_service(config, tmp_path, f"http://127.0.0.1:{port}{base_url}")
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


async def empty_postgres(url: str) -> None:
    """Drop every table of the test database."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the PostgreSQL test database (from
    ``.ci/setup-postgres``) emptied. When PostgreSQL cannot be reached the
    PostgreSQL variants fail; they never skip."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite'}"
    await empty_postgres(POSTGRES_URL)
    return POSTGRES_URL
