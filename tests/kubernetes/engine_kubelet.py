"""A test kubelet: runs a pod created in the emulated API server as a real container.

:class:`EngineKubelet` waits for a pod in the emulated API server, binds it to
a node, runs its container on the Docker engine with the chart's
:class:`~tests.cluster.pod_runner.PodRunner` (image, command and args, env
with ``secretKeyRef`` read from the emulated API, Secret and hostPath volumes,
user, read-only root, capabilities, memory limit), and reports what the
engine says: ``Pending`` (``ContainerCreating``, or
``CreateContainerConfigError`` while a Secret the pod needs does not exist,
retried as a kubelet does), ``Running``, then ``Succeeded`` or ``Failed``
with the exit code, ``OOMKilled`` when the engine says so, and the end of the
log as the termination message (``FallbackToLogsOnError``). The
container's output is served, line by line as it comes, through the log
endpoint (a :class:`~k8s_emulator.LogSource`, which adds the timestamps).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from api_server import ClusterEmulator
from k8s_emulator import Kubelet, LogSource

from tests.cluster.pod_runner import Cluster, MissingObject, PodRun, PodRunner

NODE = "engine-node"


class EngineKubelet:
    """Runs one pod at a time of the emulated API server on the Docker engine."""

    def __init__(
        self, kubelet: Kubelet, server: ClusterEmulator, work_dir: Path, namespace: str
    ) -> None:
        self.kubelet = kubelet
        self.server = server
        self.work_dir = work_dir
        self.namespace = namespace
        self.runs: list[PodRun] = []

    def _runner(self) -> PodRunner:
        """A runner that sees the Secrets in the emulated API server as they are now."""
        secrets = [
            copy.deepcopy(obj) | {"kind": "Secret"}
            for (plural, _, _), obj in self.server.objects.items()
            if plural == "secrets"
        ]
        token = self.work_dir / "no-token"
        token.write_text("")
        cluster = Cluster(
            namespace=self.namespace,
            api_host="127.0.0.1",
            api_port=9,
            ca_cert=token,
            token="",
            objects=secrets,
            node_root=self.work_dir / "node",
        )
        return PodRunner(cluster, self.work_dir)

    async def run(self, name: str, logs: LogSource) -> int:
        """Run pod ``name`` to its end; return the container's exit code."""
        pod = await self.kubelet.wait_for_pod(name)
        await self.kubelet.api.patch_namespaced_pod(
            name, self.namespace, {"spec": {"nodeName": NODE}}
        )
        await self.kubelet.pending(name, "ContainerCreating")
        run = await self._start(name, pod)
        self.runs.append(run)
        await self.kubelet.running(name, NODE)
        relay = asyncio.create_task(self._relay(run, logs))
        code = await run.wait_exit(timeout=120)
        await relay
        await logs.close()
        state = await _inspect(run.name, "{{.State.OOMKilled}}")
        reason = "OOMKilled" if state == "true" else ("Completed" if code == 0 else "Error")
        tail = "".join(line + "\n" for _, line in logs.lines[-80:]) if code else ""
        await self.kubelet.terminated(name, code, reason=reason, message=tail[-4096:])
        return code

    async def _start(self, name: str, pod: dict, timeout: float = 60) -> PodRun:
        """Start the pod's container, retrying while an object it needs is missing."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    return await self._runner().start(pod)
                except MissingObject as missing:
                    await self.kubelet.waiting(name, "CreateContainerConfigError", str(missing))
                await asyncio.sleep(0.2)

    async def _relay(self, run: PodRun, logs: LogSource) -> None:
        """Serve the container's output through the log endpoint as it comes."""
        proc = await asyncio.create_subprocess_exec(
            "docker",
            "logs",
            "--follow",
            run.name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        async for raw in proc.stdout:
            await logs.write(raw.decode(errors="replace").rstrip("\n"))
        await proc.wait()

    async def remove_all(self) -> None:
        for run in self.runs:
            await _docker_rm(run.name)


async def _inspect(container: str, template: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "inspect",
        "--format",
        template,
        container,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def _docker_rm(container: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "rm",
        "--force",
        container,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
