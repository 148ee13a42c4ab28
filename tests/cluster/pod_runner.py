"""Run a rendered pod on the real Docker engine, as a kubelet would (for tests).

A :class:`PodRunner` takes a pod (a Pod manifest, or a workload's pod
template: ``{"metadata": ..., "spec": ...}``) and runs one of its containers
with ``docker run``, translating what a kubelet does:

- ``--network=host``: the pod's address is 127.0.0.1 (the engine has no bridge);
- the security context (pod and container level): ``--user UID:GID``,
  ``--group-add`` for ``fsGroup`` and ``supplementalGroups``, ``--read-only``,
  ``--cap-drop``/``--cap-add``, ``no-new-privileges``, ``--privileged``;
- the environment: ``value``, ``valueFrom`` (``secretKeyRef`` and
  ``configMapKeyRef`` from the given manifests, ``fieldRef``), ``$(VAR)``
  expansion, and ``KUBERNETES_SERVICE_HOST``/``PORT`` of the API server;
- volumes: Secrets and ConfigMaps as files, ``emptyDir`` as ``--tmpfs``, a
  PersistentVolumeClaim as a host folder (kept across restarts, group-owned by
  ``fsGroup``), ``hostPath`` as a bind mount; the service-account token,
  ``ca.crt`` and ``namespace`` unless ``automountServiceAccountToken`` is off;
- ``command``/``args``/``workingDir``, and the probes (``httpGet``,
  ``tcpSocket``, ``exec``) run from the node (here: the test).

What it does not do, and a spec that needs it fails with :class:`PodSpecError`
rather than running differently: projected and other volume types, ``envFrom``
of unknown kinds. A container's memory limit is applied as the kubelet applies
it (``--memory``, no swap), so a container that exceeds it is OOM-killed by the
kernel; other resources, scheduling fields and probe timing are not applied
(the test decides when to probe). Images are never pulled.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POD_IP = "127.0.0.1"


class PodSpecError(Exception):
    """The pod asks for something this runner cannot do as a kubelet would."""


class MissingObject(PodSpecError):
    """A Secret or ConfigMap the pod needs does not exist (yet): a kubelet would retry."""


@dataclass(frozen=True)
class Cluster:
    """What the emulated cluster offers a pod.

    ``objects`` are the rendered manifests Secrets and ConfigMaps are read from
    (a manifest without a namespace is in ``namespace``); ``node_root`` is the
    host folder standing in for the node's disk (volumes of claims live there).
    """

    namespace: str
    api_host: str
    api_port: int
    ca_cert: Path
    token: str
    objects: list[dict[str, Any]]
    node_root: Path

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        for manifest in self.objects:
            metadata = manifest.get("metadata", {})
            if (
                manifest.get("kind") == kind
                and metadata.get("name") == name
                and metadata.get("namespace", self.namespace) == (namespace or self.namespace)
            ):
                return manifest
        return None

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        """The data of a Secret or ConfigMap (``stringData`` over base64 ``data``)."""
        manifest = self.find(kind, name)
        if manifest is None:
            return None
        if kind == "Secret":
            values = {k: base64.b64decode(v) for k, v in (manifest.get("data") or {}).items()}
        else:
            values = {k: v.encode() for k, v in (manifest.get("data") or {}).items()}
        values.update({k: v.encode() for k, v in (manifest.get("stringData") or {}).items()})
        return values


_QUANTITY_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def memory_bytes(quantity: str | int) -> int:
    """Bytes of a Kubernetes memory quantity (``64Mi``, ``1G``, ``1048576``)."""
    match = re.fullmatch(r"(\d+)([kMGT]i?|Ki)?", str(quantity))
    if match is None or (match.group(2) or "") not in _QUANTITY_SUFFIXES:
        raise PodSpecError(f"memory quantity {quantity!r} is not supported")
    return int(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2) or ""]


def _expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (``$$`` escapes; unknown references stay)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, text)


@dataclass
class PodRun:
    """One pod's container as the runner started it; ``restart()`` makes a new container."""

    runner: PodRunner
    pod: dict[str, Any]
    container: dict[str, Any]
    args: list[str]
    name: str = ""
    restarts: int = 0

    @property
    def pod_name(self) -> str:
        return str(self.pod.get("metadata", {}).get("name", "pod"))

    async def start(self) -> None:
        self.name = f"bhs-pod-{uuid.uuid4().hex[:12]}"
        code, out = await _docker("run", "--detach", "--name", self.name, *self.args)
        if code != 0:
            raise PodSpecError(f"docker run failed: {out}")

    async def logs(self) -> str:
        _, out = await _docker("logs", self.name)
        return out

    async def running(self) -> bool:
        code, out = await _docker("inspect", "--format", "{{.State.Running}}", self.name)
        return code == 0 and out.strip() == "true"

    async def wait_exit(self, timeout: float) -> int:
        """The container's exit code, once it exits by itself."""
        async with asyncio.timeout(timeout):
            code, out = await _docker("wait", self.name)
        if code != 0:
            raise PodSpecError(f"docker wait failed: {out}")
        return int(out.strip())

    async def stop(self) -> None:
        """Stop as the kubelet does (SIGTERM, then SIGKILL after the grace period), remove."""
        grace = int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        await _docker("stop", "--time", str(grace), self.name)
        await _docker("rm", "--force", self.name)

    async def restart(self) -> None:
        """A container restart: a new container of the same spec, with the pod's volumes."""
        await self.stop()
        self.restarts += 1
        await self.start()

    def port(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        for declared in self.container.get("ports", []):
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise PodSpecError(f"no container port named {port!r}")

    async def probe(self, kind: str) -> bool:
        """Run the container's ``kind`` probe (``startupProbe``...) once, as the kubelet does."""
        probe = self.container.get(kind)
        if probe is None:
            raise PodSpecError(f"the container declares no {kind}")
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            host = get.get("host", POD_IP)
            url = f"{scheme}://{host}:{self.port(get['port'])}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(
                        url,
                        headers=headers,
                        ssl=False,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=timeout),
                    ) as response,
                ):
                    return 200 <= response.status < 400
            except (aiohttp.ClientError, TimeoutError):
                return False
        if "tcpSocket" in probe:
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(
                        POD_IP, self.port(probe["tcpSocket"]["port"])
                    )
            except (OSError, TimeoutError):
                return False
            writer.close()
            return True
        if "exec" in probe:
            code, _ = await _docker("exec", self.name, *probe["exec"]["command"])
            return code == 0
        raise PodSpecError(f"unsupported {kind}: {sorted(probe)}")

    async def wait_for(self, kind: str, timeout: float = 60, interval: float = 0.5) -> None:
        """Probe until ``kind`` succeeds; fail with the container's log if it exits first."""
        async with asyncio.timeout(timeout):
            while not await self.probe(kind):
                if not await self.running():
                    raise PodSpecError(f"the container exited:\n{await self.logs()}")
                await asyncio.sleep(interval)


@dataclass
class PodRunner:
    """Runs pods' containers on the Docker engine against :class:`Cluster`.

    ``images`` maps an image named in a pod to a local one; ``work_dir`` holds
    the files given to containers (Secret volumes, the token, env files).
    """

    cluster: Cluster
    work_dir: Path
    images: dict[str, str] = field(default_factory=dict)
    runs: list[PodRun] = field(default_factory=list)

    async def start(self, pod: dict[str, Any], container: str | None = None) -> PodRun:
        spec = pod["spec"]
        chosen = (
            spec["containers"][0]
            if container is None
            else next(c for c in spec["containers"] if c["name"] == container)
        )
        run_dir = self.work_dir / f"pod-{uuid.uuid4().hex[:8]}"
        run_dir.mkdir(parents=True)
        run = PodRun(self, pod, chosen, self.docker_args(pod, chosen, run_dir))
        self.runs.append(run)
        await run.start()
        return run

    async def stop_all(self) -> None:
        for run in self.runs:
            if run.name:
                await _docker("rm", "--force", run.name)

    def docker_args(
        self, pod: dict[str, Any], container: dict[str, Any], run_dir: Path
    ) -> list[str]:
        """The ``docker run`` arguments (after ``--name``) of ``container`` in ``pod``."""
        spec = pod["spec"]
        args = ["--network=host", "--pull=never"]
        args += self._security_args(spec.get("securityContext") or {}, container)
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if memory is not None:
            limit = str(memory_bytes(memory))
            args += ["--memory", limit, "--memory-swap", limit]
        env = self._environment(pod, container)
        env_file = run_dir / "env"
        lines = []
        for key, value in env.items():
            if "\n" in value:
                raise PodSpecError(f"env {key}: multi-line values are not supported")
            lines.append(f"{key}={value}")
        env_file.write_text("".join(line + "\n" for line in lines))
        env_file.chmod(0o600)
        args += ["--env-file", str(env_file)]
        args += self._volume_args(pod, container, run_dir)
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        command = [_expand(part, env) for part in container.get("command", [])]
        rest = [_expand(part, env) for part in container.get("args", [])]
        if command:
            args += ["--entrypoint", command[0]]
        image = self.images.get(container["image"], container["image"])
        return [*args, image, *command[1:], *rest]

    def _security_args(self, pod_context: dict[str, Any], container: dict[str, Any]) -> list[str]:
        context = {**pod_context, **(container.get("securityContext") or {})}
        args: list[str] = []
        user = context.get("runAsUser")
        if context.get("runAsNonRoot") and user == 0:
            raise PodSpecError("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
        if user is not None:
            group = context.get("runAsGroup")
            args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        groups = [*context.get("supplementalGroups", [])]
        if "fsGroup" in pod_context:
            groups.append(pod_context["fsGroup"])
        for group in groups:
            args += ["--group-add", str(group)]
        if context.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if context.get("privileged"):
            args.append("--privileged")
        capabilities = context.get("capabilities") or {}
        for cap in capabilities.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in capabilities.get("add", []):
            args += ["--cap-add", cap]
        if context.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        seccomp = (context.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise PodSpecError(f"seccompProfile {seccomp} is not supported")
        return args

    def _environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env = {
            "KUBERNETES_SERVICE_HOST": self.cluster.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.cluster.api_port),
        }
        for source in container.get("envFrom", []):
            kind = "Secret" if "secretRef" in source else "ConfigMap"
            ref = source.get("secretRef") or source.get("configMapRef")
            if ref is None:
                raise PodSpecError(f"envFrom {sorted(source)} is not supported")
            data = self.cluster.data(kind, ref["name"])
            if data is None and not ref.get("optional"):
                raise PodSpecError(f"{kind} {ref['name']} not found")
            for key, value in (data or {}).items():
                env[source.get("prefix", "") + key] = value.decode()
        for item in container.get("env", []):
            value = self._env_value(pod, item, env)
            if value is not None:
                env[item["name"]] = value
        return env

    def _env_value(
        self, pod: dict[str, Any], item: dict[str, Any], env: Mapping[str, str]
    ) -> str | None:
        if "valueFrom" not in item:
            return _expand(str(item.get("value", "")), env)
        source = item["valueFrom"]
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in source:
                ref = source[key]
                data = self.cluster.data(kind, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise MissingObject(
                        f"{item['name']}: {kind} {ref['name']}/{ref['key']} missing"
                    )
                return data[ref["key"]].decode()
        if "fieldRef" in source:
            fields = {
                "metadata.name": pod.get("metadata", {}).get("name", ""),
                "metadata.namespace": self.cluster.namespace,
                "spec.nodeName": "node-1",
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
                "status.podIP": POD_IP,
                "status.hostIP": POD_IP,
            }
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                raise PodSpecError(f"{item['name']}: fieldRef {path} is not supported")
            return str(fields[path])
        raise PodSpecError(f"{item['name']}: valueFrom {sorted(source)} is not supported")

    def _volume_args(
        self, pod: dict[str, Any], container: dict[str, Any], run_dir: Path
    ) -> list[str]:
        spec = pod["spec"]
        sources: dict[str, list[str]] = {}
        for volume in spec.get("volumes", []):
            sources[volume["name"]] = self._volume(volume, spec, run_dir)
        args: list[str] = []
        for mount in container.get("volumeMounts", []):
            if "subPath" in mount:
                raise PodSpecError("volumeMounts with subPath are not supported")
            kind, source = sources[mount["name"]]
            if kind == "tmpfs":
                args += ["--tmpfs", f"{mount['mountPath']}:{source}"]
            else:
                mode = "ro" if mount.get("readOnly") or kind == "ro" else "rw"
                args += ["--volume", f"{source}:{mount['mountPath']}:{mode}"]
        if spec.get("automountServiceAccountToken", True):
            token_dir = run_dir / "serviceaccount"
            self._write_files(
                token_dir,
                {
                    "token": self.cluster.token.encode(),
                    "ca.crt": self.cluster.ca_cert.read_bytes(),
                    "namespace": self.cluster.namespace.encode(),
                },
            )
            args += ["--volume", f"{token_dir}:{SERVICE_ACCOUNT_DIR}:ro"]
        return args

    def _volume(self, volume: dict[str, Any], spec: dict[str, Any], run_dir: Path) -> list[str]:
        """``[kind, source]``: ``tmpfs`` options, or a host folder mounted ``ro`` or ``rw``."""
        name = volume["name"]
        for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
            if key in volume:
                ref = volume[key]
                ref_name = ref.get("secretName") or ref.get("name")
                data = self.cluster.data(kind, ref_name)
                if data is None:
                    raise MissingObject(f"volume {name}: {kind} {ref_name} not found")
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                files = {item["path"]: data[item["key"]] for item in items}
                folder = run_dir / "volumes" / name
                self._write_files(folder, files, ref.get("defaultMode", 0o644))
                return ["ro", str(folder)]
        if "emptyDir" in volume:
            options = "rw,exec,nosuid,nodev,mode=1777"
            limit = (volume["emptyDir"] or {}).get("sizeLimit")
            return ["tmpfs", f"{options},size={limit}" if limit else options]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if self.cluster.find("PersistentVolumeClaim", claim) is None:
                raise PodSpecError(f"volume {name}: PersistentVolumeClaim {claim} not found")
            folder = self.cluster.node_root / "claims" / self.cluster.namespace / claim
            folder.mkdir(parents=True, exist_ok=True)
            fs_group = (spec.get("securityContext") or {}).get("fsGroup")
            if fs_group is not None:
                _own_by_group(folder, int(fs_group))
            return ["rw", str(folder)]
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            return ["rw", str(path)]
        raise PodSpecError(f"volume {name}: {sorted(set(volume) - {'name'})} is not supported")

    @staticmethod
    def _write_files(folder: Path, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        folder.chmod(0o755)
        for path, content in files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)


def _own_by_group(folder: Path, gid: int) -> None:
    """What a kubelet does to a volume for ``fsGroup``: group-owned, group-writable, setgid."""
    for root, dirs, files in os.walk(folder):
        for name in [".", *dirs, *files]:
            path = Path(root) / name if name != "." else Path(root)
            os.chown(path, -1, gid)
            mode = path.stat().st_mode
            path.chmod(mode | 0o060 | (0o2010 if path.is_dir() else 0))


async def _docker(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")
