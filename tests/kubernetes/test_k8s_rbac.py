"""Every API request the executor makes, checked against the chart's Role.

The executor runs its whole repertoire (sticky node lookup, a private build
with a leftover Secret, attaching on 409, a cancelled build, recovery of an
ended pod, health) against the emulated API server through a proxy of its
own, which records each request. The requests, as (resource, verb), must be
exactly what the Role rendered by the real helm grants: nothing used that is
not granted, nothing granted that is not used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from k8s_emulator import NAMESPACE, EmulatorProxy, Kubelet, LogSource, Recorder, r2d
from kubernetes_asyncio.client import CoreV1Api

from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.kubernetes import KubernetesExecutor
from binderhub_service.executors.pod import build_pod_name

CHART = Path(__file__).parents[2] / "helm-chart" / "binderhub-service"
INSTANCE = "bhs"


def role_grants() -> set[tuple[str, str]]:
    """(resource, verb) pairs the chart's Role grants, rendered by the real helm."""
    helm = os.environ.get("BHS_HELM") or shutil.which("helm")
    if not helm:
        pytest.fail("helm not found: run .ci/install-helm (or set BHS_HELM to a helm binary)")
    rendered = subprocess.run(
        [helm, "template", INSTANCE, str(CHART), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (role,) = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Role"]
    grants = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], rule
        grants |= {(resource, verb) for resource in rule["resources"] for verb in rule["verbs"]}
    return grants


def verb_of(method: str, path: str, query: dict[str, str]) -> tuple[str, str]:
    """The RBAC (resource, verb) of one request to a namespaced core resource."""
    prefix = f"/api/v1/namespaces/{NAMESPACE}/"
    assert path.startswith(prefix), path
    resource, *rest = path.removeprefix(prefix).split("/")
    if len(rest) > 1:
        resource = f"{resource}/{rest[1]}"
    named = bool(rest)
    if method == "GET":
        if query.get("watch", "").lower() == "true":
            return resource, "watch"
        return resource, "get" if named else "list"
    verbs = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
    return resource, verbs[method]


@pytest.fixture
async def recording(emulator: EmulatorProxy) -> AsyncIterator[EmulatorProxy]:
    """A second proxy, in front of the same API server, that only the executor uses."""
    proxy = EmulatorProxy(emulator.upstream)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_the_executor_uses_exactly_what_the_role_grants(
    recording: EmulatorProxy, kubelet: Kubelet, pod_logs, core_api: CoreV1Api
) -> None:
    """One run of every executor path; the API server is emulated, the Role rendered by helm."""
    executor = KubernetesExecutor(
        api_url=recording.url,
        namespace=NAMESPACE,
        extra_labels={"app.kubernetes.io/instance": INSTANCE},
        sticky_builds=True,
        watch_retry_delay=0.01,
        log_drain_timeout=2,
    )
    request = BuildRequest(
        build_id="b1",
        provider="git",
        repo_url="https://git.example.org/org/repo",
        ref="a" * 40,
        image_name="registry.example.org/binder/org-repo:a",
        push=True,
        git_credential="username=x\\npassword=y",
    )
    name = build_pod_name(request.repo_url, request.ref, INSTANCE)
    try:
        # A private build, with a Secret left over by an earlier run.
        leftover = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-git-credential"},
        }
        await core_api.create_namespaced_secret(NAMESPACE, leftover)
        logs: LogSource = pod_logs(name)
        emit = Recorder()
        run = asyncio.create_task(executor.run(request, emit))
        await kubelet.wait_for_pod(name)
        await kubelet.running(name)
        await logs.write(r2d("building", "building"))
        await emit.wait_for("building")

        # A second request meets the running pod (409) and attaches.
        joined = Recorder()
        second = asyncio.create_task(executor.run(request, joined))
        await joined.wait_for("Attaching")
        await logs.close()
        await kubelet.terminated(name, 0)
        await asyncio.wait_for(asyncio.gather(run, second), 5)
        await kubelet.wait_for_deletion(name)

        # A cancelled build.
        other = dataclasses.replace(request, ref="b" * 40, git_credential=None)
        other_name = build_pod_name(other.repo_url, other.ref, INSTANCE)
        cancelled = asyncio.create_task(executor.run(other, Recorder()))
        await kubelet.wait_for_pod(other_name)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        await kubelet.wait_for_deletion(other_name)

        # A pod that ended while no service ran; then health.
        ended = asyncio.create_task(executor.run(other, Recorder()))
        await kubelet.wait_for_pod(other_name)
        executor.detach()
        ended.cancel()
        await asyncio.gather(ended, return_exceptions=True)
        await kubelet.terminated(other_name, 0)
        await executor.recover()
        await kubelet.wait_for_deletion(other_name)
        await executor.health()
    finally:
        await executor.shutdown()

    used = {verb_of(*entry) for entry in recording.requests}
    granted = role_grants()
    assert used - granted == set(), "used without a grant"
    assert granted - used == set(), "granted but never used"
