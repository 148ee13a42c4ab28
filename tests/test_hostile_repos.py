"""Hostile repositories against the real service: no planted secret reaches anything a user sees.

Every test plants four secrets: an environment variable of the service process,
a file on the host the service user can read, the password of the registry the
service pushes to (an htpasswd registry on loopback; the service holds it in its
docker config), and a git credential (the token of a GitHub emulated on loopback,
used to clone). Each then looks for them in the build's events, the REST
records, the service log, the metrics and, when one was built, the image.
Builds are real: the service as a subprocess, the Docker engine, repo2docker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import socket
import subprocess
import textwrap
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.local import LocalDockerExecutor

from .conftest import GitServer, Registry, start_registry, stop_process
from .github_emulator import start_github
from .repos import dockerfile, hello_repo
from .sse import read_events

pytestmark = pytest.mark.docker

USER = "pusher"


@dataclass
class PrivateRegistry:
    registry: Registry
    password: str
    docker_config: Path

    @property
    def auth(self) -> str:
        return base64.b64encode(f"{USER}:{self.password}".encode()).decode()

    def tags(self, repository: str) -> list[str]:
        request = urllib.request.Request(
            f"{self.registry.url}/v2/{repository}/tags/list",
            headers={"Authorization": f"Basic {self.auth}"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return json.load(response).get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRegistry]:
    """A registry that answers 401 without the password; a docker config that holds it."""
    root = tmp_path_factory.mktemp("private-registry")
    password = "regpass-" + secrets.token_hex(12)
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, password], check=True, capture_output=True, text=True
    ).stdout
    (root / "htpasswd").write_text(htpasswd)
    auth_lines = textwrap.dedent(
        f"""\
        auth:
          htpasswd:
            realm: test
            path: {root / "htpasswd"}
        """
    )
    proc, registry = start_registry(root, auth_lines)
    docker_config = root / "docker" / "config.json"
    docker_config.parent.mkdir()
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    docker_config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    yield PrivateRegistry(registry, password, docker_config)
    stop_process(proc)


@dataclass
class Planted:
    env_value: str
    host_file: Path
    file_value: str
    git_token: str
    registry: PrivateRegistry

    @property
    def values(self) -> dict[str, str]:
        return {
            "service environment variable": self.env_value,
            "host file": self.file_value,
            "registry password": self.registry.password,
            "registry auth": self.registry.auth,
            "git credential": self.git_token,
        }


@pytest.fixture
def planted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private_registry: PrivateRegistry
) -> Planted:
    env_value = "envsecret-" + secrets.token_hex(12)
    # The service is started after this, so its environment has the variable.
    monkeypatch.setenv("BHS_PLANTED_SECRET", env_value)
    host_file = tmp_path / "host-secret.txt"
    file_value = "filesecret-" + secrets.token_hex(12)
    host_file.write_text(file_value + "\n")
    return Planted(
        env_value, host_file, file_value, "ghp_" + secrets.token_hex(16), private_registry
    )


@pytest.fixture
async def github(git_server: GitServer, planted: Planted) -> AsyncIterator[Any]:
    """GitHub on loopback (served by the test's event loop); its repositories need the token."""
    server, emulator = start_github(git_server.root / "repos", token=planted.git_token)
    yield emulator
    server.stop()


@pytest.fixture
def hostile_service(service_factory, github, planted: Planted) -> Any:
    """The service with every secret planted: a token to clone, credentials to push."""
    registry = planted.registry
    return service_factory(
        f"c.GitHubRepoProvider.api_url = {github.url + '/api/'!r}",
        f"c.GitHubRepoProvider.clone_url_base = {github.url!r}",
        f"c.GitHubRepoProvider.access_token = {planted.git_token!r}",
        'c.GitHubRepoProvider.clone_with_token = ["octo/.*"]',
        f"c.DockerRegistry.docker_config_path = {str(registry.docker_config)!r}",
        registry=registry.registry,
    )


def make_repo(
    git_server: GitServer, name: str, files: dict[str, str], links: dict[str, str]
) -> str:
    """A repository with ``files`` and symbolic ``links`` (name to target); its sha."""
    git_server.make_repo(name, files)
    work = git_server.root / "work" / name
    for link, target in links.items():
        (work / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / link)
    _, sha = git_server.make_repo(name, {})
    return sha


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url) as response:
        return response.read().decode()


async def everything_users_and_operators_see(service: Any, stream: Any) -> dict[str, str]:
    """The event stream, the REST records (once stored), the service log and the metrics."""
    seen = {"events": json.dumps(stream.events)}
    for _ in range(100):
        records = json.loads(fetch_text(service.url + "api/v1/builds"))
        if "running" not in json.dumps(records) and "queued" not in json.dumps(records):
            break
        await asyncio.sleep(0.1)
    seen["REST list"] = json.dumps(records)
    for build_id in {b["id"] for b in records.get("builds", records.get("items", []))}:
        seen[f"REST {build_id}"] = fetch_text(f"{service.url}api/v1/builds/{build_id}")
    seen["service log"] = service.log()
    seen["metrics"] = fetch_text(service.url + "metrics")
    return seen


def image_content(image: str) -> str:
    saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout
    return saved.decode("latin-1")


def assert_nothing_planted(seen: dict[str, str], planted: Planted) -> None:
    for place, text in seen.items():
        for what, value in planted.values.items():
            assert value not in text, f"{what} in {place}"


LINKED_FILES = ["runtime.txt", "apt.txt", "environment.yml", "requirements.txt", "Dockerfile"]


@pytest.mark.parametrize("target", ["/proc/self/environ", "host file", "docker config"])
@pytest.mark.parametrize("linked", LINKED_FILES)
async def test_a_link_out_of_the_repository_is_refused(
    hostile_service, git_server, base_image, planted, linked, target
):
    path = {
        "/proc/self/environ": "/proc/self/environ",
        "host file": str(planted.host_file),
        "docker config": str(planted.registry.docker_config),
    }[target]
    files = {"README.md": "hostile\n"}
    if linked != "Dockerfile":
        files["Dockerfile"] = dockerfile(base_image, "echo built")
    name = f"octo/link-{uuid.uuid4().hex[:8]}"
    make_repo(git_server, name, files, {linked: path})

    stream = await read_events(hostile_service.build_url("gh", f"{name}/main"))

    assert stream.phases[-1] == "failed"
    assert "links must point inside the repository" in stream.messages[-1]
    assert f"{linked}: a link to {path}" in stream.messages[-1]
    assert "running repo2docker" not in hostile_service.log()
    assert_nothing_planted(
        await everything_users_and_operators_see(hostile_service, stream), planted
    )


class Listener:
    """A loopback HTTP listener standing in for an internal service; counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nLEAKED")
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    "add_lines",
    [
        ["ADD http://127.0.0.1:{port}/metadata /metadata"],
        ["ARG SOURCE=http://127.0.0.1:{port}/metadata", "ADD ${{SOURCE}} /metadata"],
        ["ADD --chmod=644 \\", "    http://127.0.0.1:{port}/metadata \\", "    /metadata"],
    ],
)
async def test_add_of_a_remote_url_is_refused_and_nothing_is_fetched(
    hostile_service, git_server, base_image, planted, add_lines
):
    listener = Listener()
    try:
        text = f"FROM {base_image}\n" + "\n".join(
            line.format(port=listener.port) for line in add_lines
        )
        name = f"octo/add-{uuid.uuid4().hex[:8]}"
        make_repo(git_server, name, {"Dockerfile": text + "\n"}, {})

        stream = await read_events(hostile_service.build_url("gh", f"{name}/main"))
    finally:
        listener.close()

    assert stream.phases[-1] == "failed"
    assert re.search(r"Dockerfile line [23]: ADD \S+ is refused", stream.messages[-1])
    assert "RUN" in stream.messages[-1]
    assert listener.connections == 0
    assert not any("LEAKED" in m for m in stream.messages)
    assert_nothing_planted(
        await everything_users_and_operators_see(hostile_service, stream), planted
    )


async def test_from_an_image_in_the_private_registry_does_not_pull_with_the_services_credential(
    hostile_service, git_server, base_image, planted
):
    registry = planted.registry
    private = f"{registry.registry.host}/private/base:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_CONFIG": str(registry.docker_config.parent)}
    subprocess.run(["docker", "tag", base_image, private], check=True)
    subprocess.run(["docker", "push", private], check=True, capture_output=True, env=env)
    # Only the registry has it now: a build would have to pull it.
    subprocess.run(["docker", "image", "rm", private], check=True, capture_output=True)
    assert registry.tags(private.split("/", 1)[1].split(":")[0])

    name = f"octo/from-private-{uuid.uuid4().hex[:8]}"
    make_repo(git_server, name, {"Dockerfile": dockerfile(private, "echo copied")}, {})
    stream = await read_events(hostile_service.build_url("gh", f"{name}/main"))

    assert stream.phases[-1] == "failed", stream.messages[-5:]
    assert any("401" in m or "unauthorized" in m.lower() or "auth" in m for m in stream.messages)
    pulled = subprocess.run(["docker", "image", "inspect", private], capture_output=True)
    assert pulled.returncode != 0
    assert_nothing_planted(
        await everything_users_and_operators_see(hostile_service, stream), planted
    )


async def test_a_normal_build_pushes_with_the_credential_the_build_never_sees(
    hostile_service, git_server, base_image, planted
):
    name = f"octo/normal-{uuid.uuid4().hex[:8]}"
    files = hello_repo(base_image, "hello")
    # An in-tree link is fine.
    sha = make_repo(git_server, name, files, {"docs/dockerfile-link": "../Dockerfile"})

    stream = await read_events(hostile_service.build_url("gh", f"{name}/main"))

    assert stream.phases[-1] == "ready", stream.messages[-5:]
    assert "pushing" in stream.phases
    image = stream.events[-1]["imageName"]
    assert image.endswith(":" + sha)
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    assert planted.registry.tags(repository) == [tag]
    seen = await everything_users_and_operators_see(hostile_service, stream)
    seen["image"] = image_content(image)
    assert_nothing_planted(seen, planted)
    subprocess.run(["docker", "image", "rm", image], capture_output=True)


async def test_the_build_container_holds_nothing_of_the_service(
    git_server, base_image, build_image, r2d_config, planted, monkeypatch, tmp_path, caplog
):
    """Without the checkout check: what could repo2docker itself read, if it tried?

    The probe's plain lines are not repo2docker's JSON log: the executor logs them
    for the operator instead of relaying them, which is where the test reads them.
    """
    monkeypatch.setenv("GIT_CREDENTIAL_ENV", planted.git_token)
    url, sha = git_server.make_repo("inside-view", hello_repo(base_image, "x"))
    probe = (
        "echo ENV-START; env; echo ENV-END; "
        f"test -e {planted.host_file} && echo HOST-FILE-VISIBLE; "
        f"test -e {planted.registry.docker_config} && echo DOCKER-CONFIG-VISIBLE; "
        "ls -a /srv/repo; touch /srv/repo/x 2>/dev/null && echo CHECKOUT-WRITABLE; "
        "cat /proc/self/status | grep CapEff; "
        "cat /sys/class/net/*/address 2>/dev/null | wc -l"
    )
    executor = LocalDockerExecutor(
        build_image=build_image,
        repo2docker_config_file=r2d_config,
        repo2docker_command=["sh", "-c", probe, "probe"],
        work_dir=str(tmp_path / "builds"),
    )
    executor.push_docker_config = str(planted.registry.docker_config)
    request = BuildRequest(
        build_id=uuid.uuid4().hex,
        provider="git",
        repo_url=url,
        ref=sha,
        image_name=f"binder-probe:{sha}",
        push=False,
        content_providers=("repo2docker.contentproviders.Git",),
        git_credential="username=x\\npassword=" + planted.git_token,
    )
    events: list[str] = []
    await executor.run(request, lambda event: events.append(event.message))

    prefix = f"Build {request.build_id}: "
    lines = [
        r.getMessage().removeprefix(prefix)
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]
    output = "\n".join(lines)
    env = output.split("ENV-START", 1)[1].split("ENV-END", 1)[0]
    names = {line.split("=", 1)[0] for line in env.strip().splitlines()}
    # The image's own variables (its Dockerfile's ENV) may show; nothing of the service's.
    image_env = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Env}}", build_image],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    image_names = {item.split("=", 1)[0] for item in json.loads(image_env) or []}
    allowed = {"HOME", "PATH", "PYTHONUNBUFFERED", "LANG", "HOSTNAME", "PWD", "SHLVL", "_"}
    assert names <= allowed | image_names
    for marker in ("HOST-FILE-VISIBLE", "DOCKER-CONFIG-VISIBLE", "CHECKOUT-WRITABLE"):
        assert marker not in output
    assert "CapEff:\t0000000000000000" in output
    # Loopback only: no network interface but lo.
    assert lines[-1].strip() == "1"
    for value in planted.values.values():
        assert value not in output
        assert value not in "".join(events)


async def test_submodules_over_http_and_ssh_are_never_fetched(
    hostile_service, git_server, base_image, planted
):
    """Submodules pointing at internal http and ssh services: the build goes on
    without them, and neither service receives a connection."""
    web, ssh = Listener(), Listener()
    try:
        name = f"octo/submodules-{uuid.uuid4().hex[:8]}"
        gitmodules = (
            '[submodule "web"]\n\tpath = web\n'
            f"\turl = http://127.0.0.1:{web.port}/internal.git\n"
            '[submodule "ssh"]\n\tpath = ssh\n'
            f"\turl = ssh://git@127.0.0.1:{ssh.port}/internal.git\n"
        )
        _, sha = git_server.make_repo(
            name, {"Dockerfile": dockerfile(base_image, "echo built"), ".gitmodules": gitmodules}
        )
        work = git_server.root / "work" / name
        git = ["git", "-C", str(work), "-c", "user.name=test", "-c", "user.email=test@localhost"]
        for path in ("web", "ssh"):
            subprocess.run(
                [*git, "update-index", "--add", "--cacheinfo", f"160000,{sha},{path}"], check=True
            )
        subprocess.run([*git, "commit", "-q", "-m", "submodules"], check=True)
        subprocess.run([*git, "push", "-q", "origin", "main"], check=True)

        stream = await read_events(hostile_service.build_url("gh", f"{name}/main"))
    finally:
        web.close()
        ssh.close()

    assert stream.phases[-1] == "ready"
    assert web.connections == 0
    assert ssh.connections == 0
    assert_nothing_planted(
        await everything_users_and_operators_see(hostile_service, stream), planted
    )
