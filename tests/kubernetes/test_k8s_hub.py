"""A build asked for through a real JupyterHub runs as a build pod on the engine.

Follows docs/source/howto/install-z2jh.md as tests/cluster/test_service_pod.py
does: the chart rendered by the real helm with the how-to's values (with this
machine's image, registry and ports, and builds on the node's own engine), the
token from the rendered Secret and the NOTES snippet as the configuration of a
real JupyterHub, and the chart's service pod run as a kubelet would. The
JavaScript client jupyterhub-fancy-profiles uses (@jupyterhub/binderhub-client,
in Node) asks for a build through the hub with a user's token. The service
creates a build pod from its executor's spec; the test kubelet
(engine_kubelet.py) runs it on the Docker engine: the CI-built service image
fetches from a git daemon, repo2docker builds and the image is pushed to a
real registry. Only Kubernetes is emulated: the API server
(tests/kubernetes/api_server.py) behind TLS with a service-account token.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_server import ClusterEmulator
from engine_kubelet import EngineKubelet
from k8s_emulator import Kubelet, LogSource
from kubernetes_asyncio.client import CoreV1Api

from binderhub_service.executors.pod import build_pod_name
from tests.chart.chart_helpers import helm, howto_values, notes_snippet
from tests.cluster.cluster_api import ApiServer
from tests.cluster.pod_runner import Cluster, PodRunner
from tests.cluster.z2jh_hub import REPO_ROOT, jupyterhub_config, start_hub
from tests.cluster.z2jh_install import (
    NAMESPACE,
    RELEASE,
    helm_install,
    hub_token,
    one,
    secret_value,
)
from tests.conftest import GitServer, Registry, free_port
from tests.service_image import service_image

pytestmark = [pytest.mark.docker, pytest.mark.hub]
__all__ = ["helm"]  # a fixture

SOCKET = "/var/run/docker.sock"


def copy_repo(base_image: str, text: str) -> dict[str, str]:
    """A repository that builds without a network (COPY only: the engine has no bridge)."""
    return {
        "Dockerfile": f'FROM {base_image}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n',
        "hello.txt": text + "\n",
    }


def chart_values(port: int, registry: Registry, hub_api_url: str) -> dict[str, Any]:
    """Step 2 of the how-to, with what differs on this machine.

    The image, ports and addresses are this machine's; the registry takes
    anonymous pushes; builds use the node's own engine (no build daemon), whose
    socket's group the build pods join.
    """
    values = howto_values()
    repository, tag = service_image().rsplit(":", 1)
    values["image"] = {"repository": repository, "tag": tag}
    values["registry"] = {"url": registry.url}
    values["config"]["BinderHubService"]["image_prefix"] = f"{registry.host}/binder/"
    values["config"]["KubernetesExecutor"] = {"supplemental_groups": [os.stat(SOCKET).st_gid]}
    values["buildDaemon"] = {"enabled": False, "socketHostDir": str(Path(SOCKET).parent)}
    values["service"] = {"port": port}
    values["jupyterhub"] = {"apiUrl": hub_api_url}
    # The test's git server listens on loopback, which the service denies by default.
    values["config"].setdefault("RepoProviderCatalog", {})["denied_networks"] = []
    return values


async def wait_for_ok(url: str, timeout: float) -> None:
    """Wait until ``url`` answers 200 (not the hub's 404 for a route not there yet)."""
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)


@pytest.fixture
async def api_server(kmock: ClusterEmulator, tmp_path: Path) -> AsyncIterator[ApiServer]:
    """The emulated API server behind TLS, with a service-account token, as a pod sees it."""
    server = ApiServer(kmock.url, tmp_path / "api-server")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_the_binderhub_client_sees_a_build_pod_build_through_the_hub(
    helm: str,
    api_server: ApiServer,
    kmock: ClusterEmulator,
    core_api: CoreV1Api,
    registry: Registry,
    git_server: GitServer,
    base_image: str,
    tmp_path: Path,
) -> None:
    port, hub_port = free_port(), free_port()
    values = chart_values(port, registry, f"http://127.0.0.1:{hub_port}/hub/api")
    manifests, notes = helm_install(helm, values, tmp_path)
    fullname = one(manifests, "Service")["metadata"]["name"]
    # Step 4: the token from the chart's Secret, the NOTES snippet in the hub's values.
    hub_values = notes_snippet(notes)["hub"]
    ((service_name, service),) = hub_values["services"].items()
    service["url"] = f"http://127.0.0.1:{port}"  # no cluster DNS here
    service["apiToken"] = secret_value(manifests, fullname, "api-token")
    hub_values["loadRoles"][f"{service_name}-users"]["users"] = ["alice"]
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
    (tmp_path / "build-kubelet").mkdir()
    kubelet = Kubelet(core_api, NAMESPACE)
    builds = EngineKubelet(kubelet, kmock, tmp_path / "build-kubelet", NAMESPACE)
    try:
        token = await asyncio.to_thread(hub_token, hub, "alice")
        pod = await runner.start(one(manifests, "Deployment")["spec"]["template"])
        await pod.wait_for("startupProbe", timeout=120)
        await pod.wait_for("readinessProbe", timeout=60)

        # The hub adds the service's route to its proxy on its own schedule.
        await wait_for_ok(f"{hub.url}services/{service_name}/versions", 60)

        url, sha = git_server.make_repo("hub-build-pod", copy_repo(base_image, "via the hub"))
        name = build_pod_name(url, sha, RELEASE)
        logs = LogSource()
        kmock[f"get /api/v1/namespaces/{NAMESPACE}/pods/{name}/log"] << logs.stream
        spec = "git/" + urllib.parse.quote(url, safe="") + "/" + sha
        client = await asyncio.create_subprocess_exec(
            "node",
            "build.mjs",
            f"{hub.url}services/{service_name}/build/",
            spec,
            token,
            cwd=REPO_ROOT / "tests" / "js",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            build_pod = await kubelet.wait_for_pod(name, timeout=60)
        except TimeoutError:
            if client.returncode is None:
                client.kill()
            out, err = await client.communicate()
            raise AssertionError(
                f"no build pod; the client said {out!r} {err!r};"
                f" the service's log:\n{await pod.logs()}"
            ) from None
        assert await asyncio.wait_for(builds.run(name, logs), 600) == 0, logs.lines[-20:]
        out, err = await asyncio.wait_for(client.communicate(), 120)
        assert client.returncode == 0, err.decode()
    finally:
        await builds.remove_all()
        await runner.stop_all()
        hub.stop()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert events[-1]["phase"] == "ready", events[-3:]
    image = events[-1]["imageName"]
    assert image.startswith(f"{registry.host}/binder/") and image.endswith(f":{sha}")
    assert sha in registry.tags(image.split("/", 1)[1].rsplit(":", 1)[0])
    # The pod the engine ran is the executor's: the chart's build image and labels.
    (container,) = build_pod["spec"]["containers"]
    assert container["image"] == service_image()
    assert build_pod["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert [run.pod_name for run in builds.runs] == [name]
