"""The chart's pod runs: the rendered Deployment's pod, on the real Docker engine.

Follows docs/source/howto/install-z2jh.md: the values of step 2 (with this
machine's registry, image and ports), the token from the rendered Secret, and
the NOTES snippet of step 4 as the configuration of a real JupyterHub. The pod
runs the CI-built service image as a kubelet would (tests/cluster/pod_runner.py)
against a real registry with credentials and a real hub. Only Kubernetes is
emulated: kmock's API server, behind TLS, reached through the pod's in-cluster
configuration (the mounted service-account token and CA certificate).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import textwrap
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cluster_api import ApiServer
from pod_runner import Cluster, PodRun, PodRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from z2jh_hub import RunningHub, jupyterhub_config, start_hub

from tests.chart.chart_helpers import howto_values, notes_snippet
from tests.cluster.z2jh_install import NAMESPACE, helm_install, hub_token, one, secret_value
from tests.conftest import (
    POSTGRES_URL,
    GitServer,
    Registry,
    empty_postgres,
    free_port,
    start_registry,
    stop_process,
)
from tests.repos import hello_repo

REGISTRY_USER, REGISTRY_PASSWORD = "builder", secrets.token_hex(8)

pytestmark = [pytest.mark.docker, pytest.mark.hub]


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[tuple[Registry, subprocess.Popen]]:
    """A real registry that answers 401 without the builder's credentials."""
    root = tmp_path / "registry"
    root.mkdir()
    with open(root / "htpasswd", "w") as f:
        subprocess.run(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], stdout=f, check=True)
    auth = textwrap.dedent(
        f"""\
        auth:
          htpasswd:
            realm: test
            path: {root / "htpasswd"}
        """
    )
    proc, registry = start_registry(root, auth)
    yield registry, proc
    stop_process(proc)


def chart_values(image: str, port: int, registry_url: str, hub_api_url: str) -> dict[str, Any]:
    """Step 2 of the how-to, with what differs on this machine (image, ports, addresses)."""
    values = howto_values()
    repository, tag = image.rsplit(":", 1)
    values["image"] = {"repository": repository, "tag": tag}
    values["registry"] = {
        "url": registry_url,
        "username": REGISTRY_USER,
        "password": REGISTRY_PASSWORD,
    }
    values["config"]["BinderHubService"]["image_prefix"] = (
        urllib.parse.urlsplit(registry_url).netloc + "/binder/"
    )
    values["service"] = {"port": port}
    values["jupyterhub"] = {"apiUrl": hub_api_url}
    # The test's git server listens on loopback, which the service denies by default.
    values["config"].setdefault("RepoProviderCatalog", {})["denied_networks"] = []
    return values


async def get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as response,
    ):
        body = await response.read()
        return response.status, body


class ServicePod:
    """The chart's service pod, started by a :class:`PodRunner`, and the hub beside it."""

    def __init__(self, run: PodRun, hub: RunningHub, url: str, user_token: str) -> None:
        self.run = run
        self.hub = hub
        self.url = url
        self.user_token = user_token

    async def wait_ready(self) -> None:
        await self.run.wait_for("startupProbe", timeout=120)
        await self.run.wait_for("readinessProbe", timeout=60)


@pytest.fixture
async def service_pod(
    helm: str,
    service_image: str,
    api_server: ApiServer,
    auth_registry: tuple[Registry, subprocess.Popen],
    tmp_path: Path,
) -> AsyncIterator[ServicePod]:
    registry, _ = auth_registry
    port, hub_port = free_port(), free_port()
    values = chart_values(service_image, port, registry.url, f"http://127.0.0.1:{hub_port}/hub/api")
    manifests, notes = helm_install(helm, values, tmp_path)
    fullname = one(manifests, "Service")["metadata"]["name"]
    # Step 4: the token from the chart's Secret, the NOTES snippet in the hub's values.
    token = secret_value(manifests, fullname, "api-token")
    hub_values = notes_snippet(notes)["hub"]
    (service,) = hub_values["services"].values()
    assert service["url"] == f"http://{fullname}.{NAMESPACE}.svc:{port}"
    service["url"] = f"http://127.0.0.1:{port}"  # no cluster DNS here
    service["apiToken"] = token
    hub_values["loadRoles"]["binder-users"]["users"] = ["alice"]
    hub_root = tmp_path / "hub"
    hub_root.mkdir()
    hub = await asyncio.to_thread(
        start_hub, hub_root, jupyterhub_config(hub_values), ["alice"], hub_port
    )
    runner = PodRunner(
        Cluster(
            namespace=NAMESPACE,
            api_host=api_server.host,
            api_port=api_server.port,
            ca_cert=api_server.ca_cert,
            token=api_server.token,
            objects=manifests,
            node_root=tmp_path / "node",
        ),
        tmp_path / "kubelet",
    )
    try:
        user_token = await asyncio.to_thread(hub_token, hub, "alice")
        run = await runner.start(one(manifests, "Deployment")["spec"]["template"])
        yield ServicePod(run, hub, f"http://127.0.0.1:{port}/services/binder/", user_token)
    finally:
        await runner.stop_all()
        hub.stop()


async def test_the_pod_becomes_ready_and_keeps_its_records(
    service_pod: ServicePod,
    api_server: ApiServer,
    git_server: GitServer,
    base_image: str,
) -> None:
    pod = service_pod
    await pod.wait_ready()
    assert await pod.run.probe("livenessProbe")
    # In-cluster configuration: the pod called the API server with its token.
    assert api_server.requests
    assert all(r.authorized for r in api_server.requests), api_server.requests
    status, body = await get(pod.url + "health")
    assert status == 200, body
    health = yaml.safe_load(body)
    assert {c["service"] for c in health["checks"]} == {"executor", "registry"}

    # A user of the hub asks for a build: the ref is resolved with the image's git,
    # a build pod is created in the emulated API server, a record is stored.
    repo_url, sha = git_server.make_repo("pod-runner", hello_repo(base_image, "hi"))
    spec = urllib.parse.quote(repo_url, safe="") + "/main"
    build_pods = await request_until_build_pod(
        pod, pod.url + f"build/git/{spec}?build_only=true", api_server
    )
    assert len(build_pods) == 1
    before = await builds(pod)
    records = [(b["repo_url"], b["ref"], b["requester"]) for b in before]
    assert records == [(repo_url, sha, "alice")]

    # A restart of the container keeps the records (the claim's host folder).
    await pod.run.restart()
    await pod.wait_ready()
    after = await builds(pod)
    assert [b["id"] for b in after] == [b["id"] for b in before]


async def request_until_build_pod(
    pod: ServicePod, url: str, api_server: ApiServer
) -> list[dict[str, Any]]:
    """Ask for a build over the event stream until its pod exists; the pods in the namespace."""
    headers = {"Authorization": f"token {pod.user_token}", "Accept": "text/event-stream"}
    lines: list[bytes] = []

    async def read(response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            lines.append(line)

    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        reader = asyncio.create_task(read(response))
        try:
            async with asyncio.timeout(60):
                while not (found := await api_server.list_pods(NAMESPACE)):
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(
                f"no build pod; events: {lines}\nservice log:\n{await pod.run.logs()}"
            ) from None
        finally:
            reader.cancel()
        return found


async def builds(pod: ServicePod) -> list[dict[str, Any]]:
    status, body = await get(pod.url + "api/v1/builds", pod.user_token)
    assert status == 200, body
    records: list[dict[str, Any]] = yaml.safe_load(body)["builds"]
    return records


async def test_readiness_fails_but_liveness_holds_when_the_registry_is_down(
    service_pod: ServicePod, auth_registry: tuple[Registry, subprocess.Popen]
) -> None:
    """/health's 503 takes the pod out of its Service; the liveness probe never restarts it."""
    await service_pod.wait_ready()
    stop_process(auth_registry[1])
    async with asyncio.timeout(60):
        while await service_pod.run.probe("readinessProbe"):
            await asyncio.sleep(1)
    assert await service_pod.run.probe("livenessProbe")
    assert await service_pod.run.probe("startupProbe")
    assert await service_pod.run.running()


async def test_without_a_registry_url_the_pod_refuses_to_start(
    helm: str, service_image: str, api_server: ApiServer, tmp_path: Path
) -> None:
    values = howto_values()
    repository, tag = service_image.rsplit(":", 1)
    values["image"] = {"repository": repository, "tag": tag}
    values["registry"] = {"url": ""}
    values["service"] = {"port": free_port()}
    manifests, notes = helm_install(helm, values, tmp_path)
    assert "registry.url is empty" in notes
    runner = PodRunner(
        Cluster(
            namespace=NAMESPACE,
            api_host=api_server.host,
            api_port=api_server.port,
            ca_cert=api_server.ca_cert,
            token=api_server.token,
            objects=manifests,
            node_root=tmp_path / "node",
        ),
        tmp_path / "kubelet",
    )
    try:
        run = await runner.start(one(manifests, "Deployment")["spec"]["template"])
        assert await run.wait_exit(timeout=60) == 1
        log = await run.logs()
    finally:
        await runner.stop_all()
    assert "Traceback" not in log
    (line,) = [line for line in log.splitlines() if "registry" in line]
    assert "no registry URL is set" in line
    assert "registry.url" in line


@pytest.mark.postgres
async def test_the_database_url_from_a_secret(
    helm: str,
    service_image: str,
    api_server: ApiServer,
    auth_registry: tuple[Registry, subprocess.Popen],
    tmp_path: Path,
) -> None:
    """databaseUrlSecret: the records go to PostgreSQL, none to the volume."""
    await empty_postgres(POSTGRES_URL)
    values = chart_values(service_image, free_port(), auth_registry[0].url, "http://127.0.0.1:1")
    values["databaseUrlSecret"] = {"name": "bhs-db", "key": "url"}
    manifests, _ = helm_install(helm, values, tmp_path)
    database_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bhs-db"},
        "stringData": {"url": POSTGRES_URL},
    }
    node = tmp_path / "node"
    runner = PodRunner(
        Cluster(
            namespace=NAMESPACE,
            api_host=api_server.host,
            api_port=api_server.port,
            ca_cert=api_server.ca_cert,
            token=api_server.token,
            objects=[*manifests, database_secret],
            node_root=node,
        ),
        tmp_path / "kubelet",
    )
    try:
        run = await runner.start(one(manifests, "Deployment")["spec"]["template"])
        await run.wait_for("startupProbe", timeout=120)
        await run.wait_for("readinessProbe", timeout=60)
        log = await run.logs()
    finally:
        await runner.stop_all()
    password = urllib.parse.urlsplit(POSTGRES_URL).password
    assert password and f":{password}@" not in log
    assert "Build records in postgresql+asyncpg://" in log
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            tables = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            assert list(tables)
    finally:
        await engine.dispose()
    assert [p.name for p in node.rglob("*") if p.is_file()] == []
