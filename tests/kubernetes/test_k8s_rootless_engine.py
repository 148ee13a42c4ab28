"""A build pod on a node whose Docker engine is rootless builds and pushes for real.

The API server is emulated (tests/kubernetes/api_server.py) and the test
kubelet runs the build pod on the system engine, as the engine's user; the
pod's Docker socket (its ``hostPath`` volume) is the rootless engine's, which
``.ci/start-rootless-engine`` started. That engine builds the image and pushes
it to a registry on loopback (relayed into its loopback-only network namespace).
This is the chart's ``buildDaemon.enabled: false`` path with a rootless engine on
the node; the chart's rootless BuildKit daemon is not exercised (no buildkitd can
run here).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from engine_kubelet import EngineKubelet
from k8s_emulator import Recorder
from test_k8s_engine import REQUEST, engine_executor, engine_kubelet

from binderhub_service.executors.kubernetes import KubernetesExecutor
from binderhub_service.executors.pod import build_pod_name
from tests.rootless import RootlessEngine
from tests.service_image import service_image

pytestmark = pytest.mark.docker
__all__ = ["engine_executor", "engine_kubelet"]  # fixtures


async def test_a_build_pod_builds_on_a_nodes_rootless_engine(
    engine_executor: KubernetesExecutor,
    engine_kubelet: EngineKubelet,
    pod_logs,
    git_server: Any,
    base_image: str,
    rootless_engine: RootlessEngine,
    engine_registry: Any,
) -> None:
    engine, registry = rootless_engine, engine_registry
    files = {
        "Dockerfile": f'FROM {base_image}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n',
        "hello.txt": "hello from a rootless node\n",
    }
    url, sha = git_server.make_repo("pod-rootless", files)
    image = f"{registry.host}/pod-rootless:{sha}"
    request = replace(REQUEST, repo_url=url, ref=sha, image_name=image)
    name = build_pod_name(url, sha)
    engine_executor.build_image = service_image()
    engine_executor.build_command = ["python", "-m", "binderhub_service.pod_build"]
    engine_executor.docker_socket_host_path = engine.socket
    engine_executor.run_as_user = engine.uid
    engine_executor.run_as_group = engine.gid
    logs = pod_logs(name)
    emit = Recorder()
    build = asyncio.create_task(engine_executor.run(request, emit))
    kubelet = asyncio.create_task(engine_kubelet.run(name, logs))
    try:
        assert await asyncio.wait_for(kubelet, 600) == 0, "\n".join(emit.messages)
        await asyncio.wait_for(build, 30)
        assert sha in registry.tags("pod-rootless")
        # The image was built in the rootless engine, not in the system one.
        assert engine.docker("image", "inspect", image, capture_output=True).returncode == 0
        run = engine.docker(
            "run", "--rm", "--network=none", image, capture_output=True, text=True, check=True
        )
        assert run.stdout == "hello from a rootless node\n"
    finally:
        engine.docker("image", "rm", "--force", image, capture_output=True)
