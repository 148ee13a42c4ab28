"""Real service processes with the Kubernetes executor, their build pods run on the engine.

Each service is ``binderhub-service --config FILE`` as an operator runs it,
with its own database and a real registry; builds clone from a git daemon on
loopback. Only Kubernetes is emulated: the API server (tests/kubernetes/api_server.py,
behind the test proxy), and a test kubelet (engine_kubelet.py) that runs each
build pod the services create as a real container of the CI-built service
image on the test engine. Two releases share one namespace; one service is
killed mid-build and started again; a private repository's credential reaches
its build pod through a Secret (served over smart HTTP with basic auth).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from api_server import ClusterEmulator
from engine_kubelet import EngineKubelet
from k8s_emulator import NAMESPACE, EmulatorProxy, Kubelet, LogSource
from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from binderhub_service.executors.pod import build_pod_name
from binderhub_service.repo2docker import parse_log_line
from tests.conftest import LOOPBACK_NETWORKS, Registry, ServiceProcess, free_port, launch_service
from tests.github_emulator import start_github
from tests.service_image import service_image
from tests.sse import read_events

pytestmark = pytest.mark.docker
SOCKET = "/var/run/docker.sock"


def copy_repo(base_image: str, text: str) -> dict[str, str]:
    """A repository that builds without a network (COPY only: the engine has no bridge)."""
    return {
        "Dockerfile": f'FROM {base_image}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n',
        "hello.txt": text + "\n",
    }


class Releases:
    """Starts service processes, one per release (instance) name, in one namespace."""

    def __init__(self, tmp_path: Path, emulator: EmulatorProxy, registry: Registry) -> None:
        self.tmp_path = tmp_path
        self.emulator = emulator
        self.registry = registry
        self.started: list[ServiceProcess] = []

    async def start(self, instance: str, *config_lines: str) -> ServiceProcess:
        """A service of release ``instance``; started again, it keeps its database.

        Waited for in a thread: the emulated API server runs on this event loop.
        """
        port = free_port()
        socket_group = os.stat(SOCKET).st_gid
        lines = [
            "c.BinderHubService.ip = '127.0.0.1'",
            f"c.BinderHubService.port = {port}",
            "c.BinderHubService.auth_enabled = False",
            "c.BinderHubService.executor_class = 'kubernetes'",
            "c.BinderHubService.use_registry = True",
            f"c.BinderHubService.image_prefix = '{self.registry.host}/{instance}-'",
            f"c.BinderHubService.db_url = 'sqlite+aiosqlite:///{self.tmp_path / instance}.sqlite'",
            f"c.DockerRegistry.url = {self.registry.url!r}",
            f"c.KubernetesExecutor.api_url = {self.emulator.url!r}",
            f"c.KubernetesExecutor.namespace = {NAMESPACE!r}",
            f"c.KubernetesExecutor.instance = {instance!r}",
            f"c.KubernetesExecutor.build_image = {service_image()!r}",
            f"c.KubernetesExecutor.docker_socket_host_path = {SOCKET!r}",
            f"c.KubernetesExecutor.supplemental_groups = [{socket_group}]",
            "c.KubernetesExecutor.watch_retry_delay = 0.1",
            LOOPBACK_NETWORKS,
            *config_lines,
        ]
        config = self.tmp_path / f"{instance}-{port}.py"
        config.write_text("\n".join(lines) + "\n")
        service = await asyncio.to_thread(
            launch_service, config, self.tmp_path, f"http://127.0.0.1:{port}/"
        )
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in self.started:
            if service.proc.poll() is None:
                service.stop()


@pytest.fixture
def releases(
    tmp_path: Path, emulator: EmulatorProxy, registry: Registry, docker_engine: None
) -> Any:
    started = Releases(tmp_path, emulator, registry)
    yield started
    started.stop_all()


@pytest.fixture
async def engine_kubelet(
    kubelet: Kubelet, kmock: ClusterEmulator, tmp_path: Path
) -> AsyncIterator[EngineKubelet]:
    runner = EngineKubelet(kubelet, kmock, tmp_path / "kubelet", NAMESPACE)
    (tmp_path / "kubelet").mkdir()
    try:
        yield runner
    finally:
        await runner.remove_all()


async def api(service: ServiceProcess, path: str, method: str = "GET", body: Any = None) -> Any:
    """A REST API call (in a thread: the emulated API server runs on this event loop)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service.url + "api/v1/" + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")

    def call() -> Any:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None

    return await asyncio.to_thread(call)


async def pod_exists(core_api: CoreV1Api, name: str) -> bool:
    try:
        await core_api.read_namespaced_pod(name, NAMESPACE)
    except ApiException as error:
        assert error.status == 404
        return False
    return True


async def test_two_releases_build_the_same_repository_apart(
    releases: Releases,
    engine_kubelet: EngineKubelet,
    kubelet: Kubelet,
    core_api: CoreV1Api,
    pod_logs: Callable[[str], LogSource],
    git_server: Any,
    base_image: str,
    registry: Registry,
) -> None:
    """Two releases, one namespace, one repository at once: two pods, two images.

    Then each release cancels a build of its own: only its own pod goes.
    """
    one, two = await releases.start("one"), await releases.start("two")
    url, sha = git_server.make_repo("two-releases", copy_repo(base_image, "built twice"))
    names = {instance: build_pod_name(url, sha, instance) for instance in ("one", "two")}
    assert names["one"] != names["two"]
    runs = [
        asyncio.create_task(engine_kubelet.run(name, pod_logs(name))) for name in names.values()
    ]
    streams = await asyncio.gather(
        read_events(one.git_build_url(url, sha)), read_events(two.git_build_url(url, sha))
    )
    assert await asyncio.gather(*runs) == [0, 0]
    images = [stream.events[-1].get("imageName") for stream in streams]
    assert [stream.phases[-1] for stream in streams] == ["ready", "ready"], [
        stream.messages[-3:] for stream in streams
    ]
    assert images[0] != images[1]
    for image, instance in zip(images, ("one", "two"), strict=True):
        assert image.startswith(f"{registry.host}/{instance}-")
        repository = image.split("/", 1)[1].rsplit(":", 1)[0]
        assert sha in registry.tags(repository)
    assert sorted(run.pod_name for run in engine_kubelet.runs) == sorted(names.values())

    # A second commit: both releases start building it, no kubelet runs the pods.
    url, sha = git_server.make_repo("two-releases", copy_repo(base_image, "cancelled"))
    names = {instance: build_pod_name(url, sha, instance) for instance in ("one", "two")}
    builds = {
        instance: await api(service, "builds", "POST", {"repo_url": url, "ref": sha})
        for instance, service in (("one", one), ("two", two))
    }
    for name in names.values():
        await kubelet.wait_for_pod(name, timeout=60)
    cancelled = await api(one, f"builds/{builds['one']['id']}/cancel", "POST")
    assert cancelled["state"] == "cancelled"
    await kubelet.wait_for_deletion(names["one"], timeout=30)
    await asyncio.sleep(1)
    assert await pod_exists(core_api, names["two"])
    await api(two, f"builds/{builds['two']['id']}/cancel", "POST")
    await kubelet.wait_for_deletion(names["two"], timeout=30)


async def test_a_build_finished_while_its_service_was_killed_is_recorded_once(
    releases: Releases,
    engine_kubelet: EngineKubelet,
    pod_logs: Callable[[str], LogSource],
    git_server: Any,
    base_image: str,
) -> None:
    """SIGKILL mid-build; the pod finishes meanwhile; the restarted service records it.

    The record says succeeded, and every line of the pod's log is in it exactly once:
    some were recorded before the kill, the rest relayed after the restart.
    """
    service = await releases.start("one")
    url, sha = git_server.make_repo("killed", copy_repo(base_image, "survived a crash"))
    name = build_pod_name(url, sha, "one")
    logs = pod_logs(name)
    run = asyncio.create_task(engine_kubelet.run(name, logs))
    build = await api(service, "builds", "POST", {"repo_url": url, "ref": sha})
    async with asyncio.timeout(120):
        while not logs.lines:
            await asyncio.sleep(0.05)
    # Freeze the build pod's container so that the kill comes mid-build.
    (container,) = [r.name for r in engine_kubelet.runs if r.pod_name == name]
    await docker("pause", container)
    await asyncio.sleep(1)  # the recorder writes every 0.2 s
    service.proc.kill()
    await asyncio.to_thread(service.proc.wait)
    await docker("unpause", container)
    assert await asyncio.wait_for(run, 300) == 0

    restarted = await releases.start("one")
    async with asyncio.timeout(60):
        while (record := await api(restarted, f"builds/{build['id']}"))["state"] == "running":
            await asyncio.sleep(0.2)
    assert record["state"] == "succeeded", record
    stream = await read_events(restarted.url + f"api/v1/builds/{build['id']}/events")
    recorded = [message.rstrip("\n") for message in stream.messages]
    pod_lines = [
        event.message.rstrip("\n")
        for _, line in logs.lines
        if (event := parse_log_line(line).event) is not None
    ]
    assert pod_lines
    for line in set(pod_lines):
        assert recorded.count(line) == pod_lines.count(line), (line, recorded)
    (note,) = [i for i, message in enumerate(recorded) if "reconnected" in message]
    assert set(recorded[:note]) & set(pod_lines), "no line was recorded before the kill"
    assert set(recorded[note:]) & set(pod_lines), "no line was relayed after the restart"


async def test_a_private_build_takes_its_credential_from_a_secret_made_before_its_pod(
    releases: Releases,
    engine_kubelet: EngineKubelet,
    emulator: EmulatorProxy,
    core_api: CoreV1Api,
    pod_logs: Callable[[str], LogSource],
    git_server: Any,
    base_image: str,
) -> None:
    """The test kubelet starts the pod's container the moment it sees the pod: no failure.

    The Secret exists before the pod, so the container starts with the
    credential (a missing Secret would have been retried, as a kubelet does);
    the pod's clone authenticates to the smart-HTTP server, and the Secret
    goes with the pod. The credential shows in no log.
    """
    token = "not-for-the-log-" + os.urandom(8).hex()
    _, sha = git_server.make_repo("octo/private-pod", copy_repo(base_image, "private"))
    server, github = start_github(git_server.root / "repos", token=token)
    try:
        credentials = {
            f"127.0.0.1:{github.port}": {"username": "x-access-token", "password": token}
        }
        service = await releases.start(
            "one",
            "c.GitRepoProvider.allowed_schemes = ['http', 'git']",
            f"c.GitRepoProvider.credentials_by_host = {credentials!r}",
        )
        url = f"{github.url}/octo/private-pod.git"
        name = build_pod_name(url, sha, "one")
        logs = pod_logs(name)
        build = await api(service, "builds", "POST", {"repo_url": url, "ref": sha})
        assert await asyncio.wait_for(engine_kubelet.run(name, logs), 300) == 0
        async with asyncio.timeout(60):
            while (record := await api(service, f"builds/{build['id']}"))["state"] == "running":
                await asyncio.sleep(0.2)
    finally:
        server.stop()
    assert record["state"] == "succeeded", record
    created = [path.rsplit("/", 1)[-1] for method, path, _ in emulator.requests if method == "POST"]
    assert created == ["secrets", "pods"]
    with pytest.raises(ApiException) as gone:
        await core_api.read_namespaced_secret(f"{name}-git-credential", NAMESPACE)
    assert gone.value.status == 404
    for text in (service.log(), "\n".join(line for _, line in logs.lines)):
        assert token not in text


async def docker(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("docker", *args)
    assert await proc.wait() == 0
