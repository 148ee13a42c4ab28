"""Build pods from the executor's spec run as real containers on the Docker engine.

The API server is emulated (tests/kubernetes/api_server.py); a test kubelet
(engine_kubelet.py) runs each build pod the executor creates with the real
engine, as a kubelet would, and reports its real outcome. One test's container
runs a stand-in for pod_build (a shell script in the base image) that checks
what the pod gives it: the Docker socket from its hostPath volume, the git
credential from its Secret, its user and capabilities. Another runs the real
pod_build of the service image against a git daemon and a hostile repository.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from api_server import ClusterEmulator
from engine_kubelet import EngineKubelet
from k8s_emulator import NAMESPACE, EmulatorProxy, Kubelet, Recorder, r2d

from binderhub_service.errors import BuildFailed
from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.kubernetes import KubernetesExecutor
from binderhub_service.executors.pod import (
    BuildPodOptions,
    build_pod_name,
    git_credential_secret_name,
    make_build_pod,
)
from tests.service_image import service_image

pytestmark = pytest.mark.docker

REQUEST = BuildRequest(
    build_id="b1",
    provider="git",
    repo_url="https://git.example.org/org/repo",
    ref="c" * 40,
    image_name="registry.example.org/binder/org-repo:c",
    push=True,
    git_credential="username=x\\npassword=not-for-the-log",
)
POD = build_pod_name(REQUEST.repo_url, REQUEST.ref)

# Stands in for pod_build: JSON log lines about what the pod gave it. Its one
# argument is the build spec, whose env (the operator's build_env) names the exit code.
SCRIPT = r"""
say() { printf '{"phase": "%s", "message": "%s\\n"}\n' "$1" "$2"; }
case "$1" in *'"EXIT_CODE": "3"'*) EXIT_CODE=3 ;; *) EXIT_CODE=0 ;; esac
say fetching "uid $(id -u)"
[ -S /var/run/docker.sock ] && say building "docker socket mounted"
say building "credential of ${#GIT_CREDENTIAL_ENV} characters"
grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status && say building "no capabilities"
say pushing "done, exit $EXIT_CODE"
exit "$EXIT_CODE"
"""


@pytest.fixture
async def engine_executor(
    emulator: EmulatorProxy, base_image: str
) -> AsyncIterator[KubernetesExecutor]:
    executor = KubernetesExecutor(
        api_url=emulator.url,
        namespace=NAMESPACE,
        build_image=base_image,
        build_command=["sh", "-c", SCRIPT, "repo2docker"],
        docker_socket_host_path="/var/run/docker.sock",
        run_as_user=1000,
        run_as_group=1000,
        watch_retry_delay=0.05,
        log_drain_timeout=10,
    )
    try:
        yield executor
    finally:
        await executor.shutdown()


@pytest.fixture
async def engine_kubelet(
    kubelet: Kubelet, kmock: ClusterEmulator, tmp_path: Path
) -> AsyncIterator[EngineKubelet]:
    runner = EngineKubelet(kubelet, kmock, tmp_path, NAMESPACE)
    try:
        yield runner
    finally:
        await runner.remove_all()


@pytest.mark.parametrize("exit_code", [0, 3])
async def test_a_build_pod_runs_on_the_engine(
    engine_executor: KubernetesExecutor,
    engine_kubelet: EngineKubelet,
    pod_logs,
    exit_code: int,
) -> None:
    """The pod's spec runs as a container; its log and exit code make the build's outcome.

    The API server is emulated; the container really runs on the engine.
    """
    engine_executor.build_env = {"EXIT_CODE": str(exit_code)}
    logs = pod_logs(POD)
    emit = Recorder()
    build = asyncio.create_task(engine_executor.run(REQUEST, emit))
    kubelet = asyncio.create_task(engine_kubelet.run(POD, logs))
    assert await asyncio.wait_for(kubelet, 120) == exit_code
    if exit_code == 0:
        await asyncio.wait_for(build, 30)
    else:
        with pytest.raises(BuildFailed, match=f"exited with code {exit_code}") as failed:
            await asyncio.wait_for(build, 30)
    messages = emit.messages
    assert "uid 1000" in messages
    assert "docker socket mounted" in messages
    length = len(REQUEST.git_credential or "")
    assert f"credential of {length} characters" in messages
    assert "no capabilities" in messages
    assert f"done, exit {exit_code}" in messages
    assert not any("not-for-the-log" in message for message in messages)
    if exit_code:
        # The kubelet's termination message (the log's end) explains the failure.
        assert "done, exit 3" in str(failed.value)


async def test_a_hostile_repository_fails_in_a_real_build_pod(
    engine_executor: KubernetesExecutor,
    engine_kubelet: EngineKubelet,
    pod_logs,
    git_server: Any,
) -> None:
    """The service image's pod_build refuses ``apt.txt -> /proc/self/environ``; no secret leaks.

    The API server is emulated; the pod really runs the service image on the engine and
    clones from a git daemon on loopback, with a planted git credential from its Secret.
    """
    git_server.make_repo("pod-hostile", {"README.md": "hostile\n"})
    os.symlink("/proc/self/environ", git_server.root / "work" / "pod-hostile" / "apt.txt")
    url, sha = git_server.make_repo("pod-hostile", {})
    request = replace(REQUEST, repo_url=url, ref=sha)
    name = build_pod_name(url, sha)
    engine_executor.build_image = service_image()
    engine_executor.build_command = ["python", "-m", "binderhub_service.pod_build"]
    logs = pod_logs(name)
    emit = Recorder()
    build = asyncio.create_task(engine_executor.run(request, emit))
    kubelet = asyncio.create_task(engine_kubelet.run(name, logs))
    assert await asyncio.wait_for(kubelet, 120) == 1
    with pytest.raises(BuildFailed) as failed:
        await asyncio.wait_for(build, 30)
    messages = emit.messages
    assert any(message.startswith("Fetching") for message in messages)
    assert any("apt.txt" in message for message in messages)
    pod_log = "\n".join(line for _, line in logs.lines)
    for text in (*messages, str(failed.value), pod_log):
        assert "not-for-the-log" not in text
    assert "GIT_CREDENTIAL_ENV" not in pod_log


async def test_a_real_build_pod_builds_an_image(
    engine_executor: KubernetesExecutor,
    engine_kubelet: EngineKubelet,
    pod_logs,
    git_server: Any,
    base_image: str,
    registry: Any,
) -> None:
    """The service image's pod_build fetches, repo2docker builds the checkout, docker pushes.

    The API server is emulated; the pod runs on the engine, clones from a git daemon on
    loopback, builds with the engine through the socket and pushes to a real registry on
    loopback (anonymous: the pod has no registry Secret).
    """
    # COPY, not RUN: RUN steps need a network, and this engine has no bridge (and the
    # pod has no repo2docker config to give builds --network=none).
    files = {
        "Dockerfile": f'FROM {base_image}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n',
        "hello.txt": "hello from a pod\n",
    }
    url, sha = git_server.make_repo("pod-hello", files)
    image = f"{registry.host}/pod-hello:{sha}"
    request = replace(REQUEST, repo_url=url, ref=sha, image_name=image)
    name = build_pod_name(url, sha)
    engine_executor.build_image = service_image()
    engine_executor.build_command = ["python", "-m", "binderhub_service.pod_build"]
    engine_executor.supplemental_groups = [os.stat("/var/run/docker.sock").st_gid]
    logs = pod_logs(name)
    emit = Recorder()
    build = asyncio.create_task(engine_executor.run(request, emit))
    kubelet = asyncio.create_task(engine_kubelet.run(name, logs))
    try:
        assert await asyncio.wait_for(kubelet, 600) == 0, "\n".join(emit.messages)
        await asyncio.wait_for(build, 30)
        proc = await asyncio.create_subprocess_exec(
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            request.image_name,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert out.decode().strip() == "hello from a pod"
        assert sha in registry.tags("pod-hello")
        assert any(message.startswith(f"Pushing {image}") for message in emit.messages)
        assert "not-for-the-log" not in "\n".join(line for _, line in logs.lines)
    finally:
        remove = await asyncio.create_subprocess_exec(
            "docker", "rmi", "--force", request.image_name, stdout=asyncio.subprocess.DEVNULL
        )
        await remove.wait()


async def test_a_build_over_its_memory_limit_fails_as_out_of_memory(
    engine_executor: KubernetesExecutor, engine_kubelet: EngineKubelet, pod_logs
) -> None:
    """The engine OOM-kills a container over its limit; the build says so, not repo2docker.

    The API server is emulated; the container really runs on the engine with the pod's
    memory limit, and the kernel kills it. Its last line claims another failure, as
    repo2docker's would: the out-of-memory kill is the reason reported.
    """
    engine_executor.resources = {"limits": {"memory": "32Mi"}}
    engine_executor.build_command = [
        "sh",
        "-c",
        "printf '%s\\n' \"$0\"; exec tail /dev/zero",
        r2d("some other error", "failed"),
    ]
    logs = pod_logs(POD)
    build = asyncio.create_task(engine_executor.run(REQUEST, Recorder()))
    kubelet = asyncio.create_task(engine_kubelet.run(POD, logs))
    assert await asyncio.wait_for(kubelet, 120) == 137
    with pytest.raises(BuildFailed) as failed:
        await asyncio.wait_for(build, 30)
    assert str(failed.value) == (
        "The build ran out of memory: it exceeded the build pod's memory limit of 32Mi"
        " and was killed (OOMKilled)"
    )


async def test_the_test_kubelet_waits_for_a_secret_as_a_kubelet_does(
    engine_kubelet: EngineKubelet, kubelet: Kubelet, core_api, pod_logs, base_image: str
) -> None:
    """A pod whose Secret comes late waits in CreateContainerConfigError, then runs.

    Checks the test kubelet itself (the executor creates Secrets before their pods);
    the API server is emulated, the container runs on the engine.
    """
    secret_name = git_credential_secret_name(POD)
    options = BuildPodOptions(
        build_id="b1",
        repo2docker=KubernetesExecutor().repo2docker_options(REQUEST),
        namespace=NAMESPACE,
        image=base_image,
        command=("sh", "-c", 'echo "credential of ${#GIT_CREDENTIAL_ENV} characters"'),
        git_credential_secret_name=secret_name,
    )
    await core_api.create_namespaced_pod(NAMESPACE, make_build_pod(options))
    logs = pod_logs(POD)
    run = asyncio.create_task(engine_kubelet.run(POD, logs))
    async with asyncio.timeout(10):
        while True:
            pod = await kubelet.wait_for_pod(POD)
            statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
            waiting = (statuses[0].get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                break
            await asyncio.sleep(0.05)
    assert secret_name in waiting["message"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name},
        "stringData": {"GIT_CREDENTIAL_ENV": "12345"},
    }
    await core_api.create_namespaced_secret(NAMESPACE, secret)
    assert await asyncio.wait_for(run, 60) == 0
    assert [line for _, line in logs.lines] == ["credential of 5 characters"]
