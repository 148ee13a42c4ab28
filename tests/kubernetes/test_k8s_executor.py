"""The Kubernetes executor against an emulated API server, through the real client.

kmock's KubernetesEmulator stands in for the API server; each test plays the
kubelet by patching the build pod's status and serves the pod's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import tomllib
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import aiohttp
import pytest
from k8s_emulator import NAMESPACE, EmulatorProxy, Kubelet, LogSource, Recorder, r2d
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets.config import Config

import binderhub_service
from binderhub_service.errors import BuildFailed, ServiceError
from binderhub_service.events import Phase
from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.kubernetes import BuildPod, KubernetesExecutor
from binderhub_service.executors.pod import (
    BuildPodOptions,
    build_pod_name,
    make_build_pod,
    pick_sticky_node,
)
from binderhub_service.step_limits import BuildOutOfMemory

REQUEST = BuildRequest(
    build_id="b1",
    provider="git",
    repo_url="https://git.example.org/org/repo",
    ref="0123456789abcdef0123456789abcdef01234567",
    image_name="registry.example.org/binder/org-repo:0123456789ab",
    push=True,
)
POD = build_pod_name(REQUEST.repo_url, REQUEST.ref)
# The pod name of installation "a"'s build of REQUEST.
SCOPED = build_pod_name(REQUEST.repo_url, REQUEST.ref, "a")

Logs = Callable[[str], LogSource]


async def test_build_succeeds(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, assert_valid
) -> None:
    """A pod goes Pending -> Running -> Succeeded; the API server is emulated."""
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))

    pod = await kubelet.wait_for_pod(POD)
    assert_valid(pod)
    assert pod["metadata"]["namespace"] == NAMESPACE
    assert pod["metadata"]["labels"]["component"] == "binderhub-service-build"
    await emit.wait_for("created")

    await kubelet.pending(POD, "ContainerCreating")
    await emit.wait_for("ContainerCreating")
    await logs.write(r2d("Picked Git content provider.", "fetching"))
    await kubelet.running(POD)
    await emit.wait_for("Picked Git")
    await logs.write(r2d("Step 1/3", "building"), "not json", r2d("Pushing", "pushing"))
    await emit.wait_for("Pushing")
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)

    assert [(event.phase, event.message.rstrip("\n")) for event in emit.events] == [
        (Phase.WAITING, f"Build pod {POD} created, waiting for it to start"),
        (Phase.WAITING, "Waiting for the build pod to start"),
        (Phase.WAITING, "Waiting for the build pod to start (ContainerCreating)"),
        (Phase.FETCHING, f"Build pod {POD} started on node node-1"),
        (Phase.FETCHING, "Picked Git content provider."),
        (Phase.BUILDING, "Step 1/3"),
        (Phase.UNKNOWN, "not json"),
        (Phase.PUSHING, "Pushing"),
    ]
    # The followed stream, then (at least) one more read once the container ended.
    assert logs.requests >= 2
    await kubelet.wait_for_deletion(POD)


@pytest.mark.parametrize("cut", [False, True])
async def test_broken_log_streams_lose_and_repeat_no_line(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, cut: bool
) -> None:
    """Log streams that break mid-build are reopened; the API server is emulated."""
    logs = pod_logs(POD)
    logs.break_after(2, 3, 1, cut=cut)
    lines = [f"line {i}" for i in range(12)]
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await kubelet.wait_for_pod(POD)
    await logs.write(*(r2d(line, "building") for line in lines[:5]))
    await kubelet.running(POD)
    await emit.wait_for("line 4")
    await logs.write(*(r2d(line, "building") for line in lines[5:]))
    await emit.wait_for("line 11")
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)

    relayed = [message for message in emit.messages if message.startswith("line ")]
    assert relayed == lines
    assert logs.requests >= 4


async def test_log_cut_off_as_the_container_ends_is_read_to_the_end(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """A stream that breaks just before the container ends loses nothing; emulated API server."""
    logs = pod_logs(POD)
    logs.break_after(1, cut=True)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await kubelet.wait_for_pod(POD)
    await logs.write(r2d("first", "building"), r2d("last", "pushing"))
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)
    assert emit.messages[-2:] == ["first", "last"]


TOKEN = "s3cret-token-for-the-test"
PRIVATE = dataclasses.replace(REQUEST, git_credential=f"username=x-access-token\\npassword={TOKEN}")
SECRET = f"{POD}-git-credential"


async def _read_secret(core_api, name: str) -> dict | None:
    try:
        secret = await core_api.read_namespaced_secret(name, NAMESPACE)
    except ApiException as error:
        assert error.status == 404
        return None
    return core_api.api_client.sanitize_for_serialization(secret)


@pytest.mark.parametrize("ending", ["success", "failure", "cancel"])
async def test_git_credential_reaches_the_pod_only_through_its_secret(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    core_api,
    assert_valid,
    caplog: pytest.LogCaptureFixture,
    ending: str,
) -> None:
    """A private build's credential lives in a Secret gone with the pod; emulated API server."""
    caplog.set_level(logging.DEBUG)
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(PRIVATE, emit))
    pod = await kubelet.wait_for_pod(POD)
    async with asyncio.timeout(5):
        # Created before the pod, then owned by it.
        while (
            not ((secret := await _read_secret(core_api, SECRET)) or {})
            .get("metadata", {})
            .get("ownerReferences")
        ):
            await asyncio.sleep(0.02)
    assert_valid(pod)
    assert TOKEN not in json.dumps(pod)
    env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
    assert env["GIT_CREDENTIAL_ENV"] == {
        "name": "GIT_CREDENTIAL_ENV",
        "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "GIT_CREDENTIAL_ENV"}},
    }
    # The fetch step scopes the credential to the origin itself: no git configuration.
    assert not any(name.startswith("GIT_CONFIG") for name in env)
    assert secret["stringData"] == {"GIT_CREDENTIAL_ENV": PRIVATE.git_credential}
    assert secret["metadata"]["labels"] == pod["metadata"]["labels"]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]

    await kubelet.running(POD)
    await logs.write(r2d("building", "building"))
    await emit.wait_for("building")
    if ending == "cancel":
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    else:
        await logs.close()
        await kubelet.terminated(POD, 0 if ending == "success" else 1)
        if ending == "success":
            await asyncio.wait_for(run, 5)
        else:
            with pytest.raises(BuildFailed):
                await asyncio.wait_for(run, 5)
    await kubelet.wait_for_deletion(POD)
    async with asyncio.timeout(5):
        while await _read_secret(core_api, SECRET) is not None:
            await asyncio.sleep(0.02)
    assert all(TOKEN not in event.message for event in emit.events)
    service_log = [r.getMessage() for r in caplog.records if r.name == executor.log.name]
    assert service_log and not any(TOKEN in message for message in service_log)
    await logs.close()


async def test_detached_build_keeps_its_secret(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, core_api
) -> None:
    """A build left running at shutdown keeps its credential; the API server is emulated."""
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(PRIVATE, emit))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("building", "building"))
    await emit.wait_for("building")
    executor.detach()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert await _read_secret(core_api, SECRET) is not None
    await logs.close()


async def test_public_build_has_no_secret(
    executor: KubernetesExecutor, kubelet: Kubelet, core_api
) -> None:
    """Without a credential no Secret is made; the API server is emulated."""
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    pod = await kubelet.wait_for_pod(POD)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    names = [item["name"] for item in pod["spec"]["containers"][0]["env"]]
    assert not any(name.startswith("GIT_") for name in names)
    assert await _read_secret(core_api, SECRET) is None


async def test_build_fails_with_a_fixed_reason(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """A failed pod raises BuildFailed with a fixed reason; the API server is emulated."""
    logs = pod_logs(POD)
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("Step 1/3", "building"), r2d("Error: no space left", "failed"))
    await logs.close()
    await kubelet.terminated(POD, 1, reason="Error")
    # repo2docker's own text may quote what it read: users get a fixed one.
    with pytest.raises(BuildFailed, match="repo2docker could not build this repository"):
        await asyncio.wait_for(run, 5)
    await kubelet.wait_for_deletion(POD)


async def test_a_step_killed_for_memory_fails_naming_the_limit(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """BuildKit's exit code 137 in the log means out of memory; the API server is emulated."""
    executor.build_memory_limit = "2G"
    logs = pod_logs(POD)
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(
        r2d("#5 1.812 Killed", "building"),
        r2d("ERROR: executor failed running [/bin/sh -c big]: exit code: 137", "building"),
        r2d("Command '[...]' returned non-zero exit status 1", "failed"),
    )
    await logs.close()
    await kubelet.terminated(POD, 1, reason="Error")
    with pytest.raises(BuildOutOfMemory, match="memory limit of 2 GiB per build step") as failed:
        await asyncio.wait_for(run, 5)
    assert failed.value.limit == 2 * 2**30
    await kubelet.wait_for_deletion(POD)


def _terminated(exit_code: int, reason: str) -> dict:
    return {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "repo2docker",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("status", "reason", "failure_class"),
    [
        ({"phase": "Failed", "reason": "DeadlineExceeded"}, "time limit", "timeout"),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "repo2docker",
                        "image": "x",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            },
            "out of memory",
            "out_of_memory",
        ),
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: ephemeral-storage. Threshold "
                "quantity: 1Gi, available: 512Mi.",
            },
            "evicted",
            "disk_full",
        ),
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
            },
            "evicted",
            "out_of_memory",
        ),
        (_terminated(137, "Error"), "exited with code 137", "out_of_memory"),
        (_terminated(2, "Error"), "exited with code 2", "unknown"),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "repo2docker",
                        "image": "x",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "InvalidImageName"}},
                    }
                ],
            },
            "could not start",
            "unknown",
        ),
    ],
)
async def test_failure_reasons_from_pod_status(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    status: dict,
    reason: str,
    failure_class: str,
) -> None:
    """Without a repo2docker reason the pod status explains; the API server is emulated."""
    logs = pod_logs(POD)
    await logs.close()
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.set_status(POD, status)
    with pytest.raises(BuildFailed, match=reason) as error:
        await asyncio.wait_for(run, 5)
    assert error.value.failure_class == failure_class


@pytest.mark.parametrize(
    ("lines", "failure_class"),
    [
        # The build pod's program names the class on its failed line.
        (
            [
                r2d("x", "building"),
                json.dumps(
                    {"phase": "failed", "message": "The build failed", "failure_class": "disk_full"}
                ),
            ],
            "disk_full",
        ),
        # An older build image does not: the executor reads the log itself.
        (
            [
                r2d("#5 ERROR: executor failed running [/bin/sh -c x]: exit code: 137", "building"),
                r2d("Command '[...]' returned non-zero exit status 1", "failed"),
            ],
            "out_of_memory",
        ),
        (
            [
                r2d("#5 0.2 ERROR: ResolutionImpossible: for help visit ...", "building"),
                r2d("Command '[...]' returned non-zero exit status 1", "failed"),
            ],
            "dependency_conflict",
        ),
    ],
)
async def test_failure_class_from_the_pods_log(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    lines: list[str],
    failure_class: str,
) -> None:
    """The class comes from the build pod's log when its status says nothing; the API
    server is emulated."""
    logs = pod_logs(POD)
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(*lines)
    await logs.close()
    await kubelet.terminated(POD, 1, reason="Error")
    with pytest.raises(BuildFailed) as error:
        await asyncio.wait_for(run, 5)
    assert error.value.failure_class == failure_class


def test_the_memory_limit_of_build_pods_is_named_in_hints() -> None:
    executor = KubernetesExecutor(resources={"limits": {"memory": "4Gi"}})
    assert executor.memory_limit() == "4Gi"
    assert KubernetesExecutor().memory_limit() is None


def test_the_fetch_timeout_reaches_the_build_pod() -> None:
    options = BuildPodOptions(
        build_id="b1",
        repo2docker=KubernetesExecutor().repo2docker_options(REQUEST),
        fetch_timeout=42.0,
    )
    spec = json.loads(make_build_pod(options)["spec"]["containers"][0]["args"][0])
    assert spec["fetch_timeout"] == 42.0


async def test_second_request_attaches_to_the_running_pod(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, emulator: EmulatorProxy
) -> None:
    """Create answers 409: the executor follows the existing pod; the API server is emulated."""
    logs = pod_logs(POD)
    first, second = Recorder(), Recorder()
    run1 = asyncio.create_task(executor.run(REQUEST, first))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("first line", "fetching"))
    await first.wait_for("first line")

    other = KubernetesExecutor(api_url=emulator.url, namespace=NAMESPACE, parent=None)
    try:
        run2 = asyncio.create_task(other.run(REQUEST, second))
        await second.wait_for("first line")
        assert f"Attaching to build pod {POD}, already started" in second.messages
        await logs.write(r2d("last line", "building"))
        await logs.close()
        await kubelet.terminated(POD, 0)
        await asyncio.wait_for(asyncio.gather(run1, run2), 5)
    finally:
        await other.shutdown()
    assert "last line" in first.messages
    assert "last line" in second.messages
    assert logs.requests >= 4


async def test_failed_pod_left_over_is_replaced(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, core_api
) -> None:
    """A failed pod kept for inspection does not fail a new build; the API server is emulated."""
    executor.delete_finished_pods_after = 60
    logs = pod_logs(POD)
    await logs.close()
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.terminated(POD, 1)
    with pytest.raises(BuildFailed):
        await asyncio.wait_for(run, 5)
    assert (await kubelet.wait_for_pod(POD))["status"]["phase"] == "Failed"

    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await emit.wait_for("created")
    pod = await kubelet.wait_for_pod(POD)
    assert pod["status"] == {"phase": "Pending"}
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)


async def start_building(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> tuple[asyncio.Task[None], LogSource]:
    """A build whose pod runs and has logged a line; returns its task and its log."""
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("building", "building"))
    await emit.wait_for("building")
    return run, logs


async def test_cancel_deletes_the_pod(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, emulator: EmulatorProxy
) -> None:
    """Cancelling the build deletes its pod, with a short grace; the API server is emulated."""
    run, logs = await start_building(executor, kubelet, pod_logs)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # Deleted before run() re-raised: the pod is terminating, within the cancel grace.
    deletions = [query for method, path, query in emulator.requests if method == "DELETE"]
    assert deletions[0]["gracePeriodSeconds"] == "5"
    await kubelet.wait_for_deletion(POD)
    assert await executor.find_build_pods() == []
    await logs.close()


async def test_a_detached_executor_leaves_the_pod_running(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """At shutdown the pod keeps building for the next start; the API server is emulated."""
    run, logs = await start_building(executor, kubelet, pod_logs)
    executor.detach()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert [b.pod_name for b in await executor.find_build_pods()] == [POD]
    await logs.close()


async def test_timeout_deletes_the_pod(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """A caller's timeout deletes the pod; the API server is emulated."""
    pod_logs(POD)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(executor.run(REQUEST, Recorder()), 0.5)
    assert await executor.find_build_pods() == []


async def test_pod_deleted_by_someone_else_fails_the_build(
    executor: KubernetesExecutor, kubelet: Kubelet, core_api
) -> None:
    """The pod vanishing ends the build with a reason; the API server is emulated."""
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await core_api.delete_namespaced_pod(POD, NAMESPACE)
    with pytest.raises(BuildFailed, match="deleted"):
        await asyncio.wait_for(run, 5)


async def test_reattach_after_restart(
    emulator: EmulatorProxy, kubelet: Kubelet, pod_logs: Logs, core_api
) -> None:
    """A new executor finds the build pod and follows it to the end; the API server is emulated."""
    logs = pod_logs(SCOPED)
    before = KubernetesExecutor(
        api_url=emulator.url, namespace=NAMESPACE, extra_labels={"app.kubernetes.io/instance": "a"}
    )
    run = asyncio.create_task(before.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(SCOPED)
    await kubelet.running(SCOPED)
    await logs.write(r2d("before the restart", "building"))
    # The service stops without cancelling its builds (a crash, a rolling update).
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await before.shutdown()
    await kubelet.wait_for_deletion(SCOPED)

    # The cancelled run deleted it; a crash would not: make the pod exist again.
    after = KubernetesExecutor(
        api_url=emulator.url, namespace=NAMESPACE, extra_labels={"app.kubernetes.io/instance": "a"}
    )
    try:
        options = BuildPodOptions(
            build_id="b1",
            repo2docker=after.repo2docker_options(REQUEST),
            namespace=NAMESPACE,
            instance="a",
            extra_labels={"app.kubernetes.io/instance": "a"},
        )
        created = await core_api.create_namespaced_pod(NAMESPACE, make_build_pod(options))
        await kubelet.running(SCOPED)

        builds = await after.find_build_pods()
        assert builds == [
            BuildPod(
                pod_name=SCOPED,
                build_id="b1",
                repo_url=REQUEST.repo_url,
                ref=REQUEST.ref,
                image_name=REQUEST.image_name,
                phase="Running",
                uid=created.metadata.uid,
            )
        ]
        emit = Recorder()
        reattached = asyncio.create_task(after.reattach(REQUEST, emit))
        await emit.wait_for("before the restart")
        await logs.write(r2d("after the restart", "pushing"))
        await logs.close()
        await kubelet.terminated(SCOPED, 0)
        await asyncio.wait_for(reattached, 5)
        assert emit.messages[-2:] == ["before the restart", "after the restart"]
    finally:
        await after.shutdown()


async def test_reattach_resumes_after_the_last_recorded_line(
    emulator: EmulatorProxy, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """Each line is relayed once across a restart: reattaching skips what was recorded.

    The API server is emulated. The first run relays three lines (each event
    carries its pod log position); the restarted service had recorded only two
    of them, and the pod went on writing (and finished) while no one followed.
    """
    logs = pod_logs(POD)
    before = KubernetesExecutor(api_url=emulator.url, namespace=NAMESPACE)
    first = Recorder()
    run = asyncio.create_task(before.run(REQUEST, first))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    # Lines of one timestamp are told apart by their index among that timestamp's.
    await logs.write(r2d("one", "building"), r2d("same", "building"), r2d("same", "building"))
    await first.wait_for("same")
    async with asyncio.timeout(5):
        while len([e for e in first.events if e.log_position]) < 3:
            await asyncio.sleep(0.01)
    before.detach()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await before.shutdown()
    relayed = [e for e in first.events if e.log_position]
    assert [e.message for e in relayed] == ["one\n", "same\n", "same\n"]
    await logs.write(r2d("while down", "pushing"))
    await logs.close()
    await kubelet.terminated(POD, 0)

    after = KubernetesExecutor(api_url=emulator.url, namespace=NAMESPACE)
    try:
        resumed = Recorder()
        request = dataclasses.replace(REQUEST, resume_after=relayed[1].log_position)
        await asyncio.wait_for(after.reattach(request, resumed), 5)
    finally:
        await after.shutdown()
    lines = [e.message.rstrip("\n") for e in resumed.events if e.log_position]
    assert lines == ["same", "while down"]


async def test_recover_deletes_pods_that_ended_unfollowed(
    executor: KubernetesExecutor, kubelet: Kubelet, core_api
) -> None:
    """Pods that ended while no service ran are deleted, running ones kept; API emulated."""
    other = dataclasses.replace(REQUEST, build_id="b2", ref="b" * 40)
    for request in (REQUEST, other):
        options = BuildPodOptions(
            build_id=request.build_id,
            repo2docker=executor.repo2docker_options(request),
            namespace=NAMESPACE,
        )
        await core_api.create_namespaced_pod(NAMESPACE, make_build_pod(options))
    ended = build_pod_name(other.repo_url, other.ref)
    await kubelet.running(POD)
    await kubelet.terminated(ended, 0)

    await executor.recover()

    await kubelet.wait_for_deletion(ended)
    assert [b.pod_name for b in await executor.find_build_pods()] == [POD]


async def test_reattach_to_a_missing_pod_fails(executor: KubernetesExecutor) -> None:
    """Reattaching to a pod that is gone fails the build; the API server is emulated."""
    with pytest.raises(BuildFailed, match="deleted"):
        await executor.reattach(REQUEST, Recorder())


@pytest.mark.parametrize("failure", ["fail_watches", "expire_watches"])
async def test_watch_errors_recover(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    emulator: EmulatorProxy,
    failure: str,
) -> None:
    """Failed and expired watches are started again; the API server is emulated."""
    logs = pod_logs(POD)
    setattr(emulator, failure, 2)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("building", "building"))
    await logs.close()
    await emit.wait_for("building")
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)
    assert getattr(emulator, failure) == 0
    assert emulator.watch_requests >= 2


async def test_watch_failing_for_too_long_fails_the_build(
    executor: KubernetesExecutor, kubelet: Kubelet, emulator: EmulatorProxy
) -> None:
    """A watch that keeps failing fails the build instead of hanging; the API server is emulated."""
    emulator.fail_watches = 10_000
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    with pytest.raises(BuildFailed, match="Lost track of the build"):
        await asyncio.wait_for(run, 5)
    assert emulator.watch_requests > 2


async def test_sticky_builds_prefer_a_build_daemon_node(
    executor: KubernetesExecutor, kubelet: Kubelet, core_api, assert_valid
) -> None:
    """Sticky builds pick among nodes running a build daemon; the API server is emulated."""
    nodes = ["node-a", "node-b", "node-c"]
    for node in nodes:
        name = f"dind-{node}"
        daemon = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": {"component": "binderhub-build-daemon"},
            },
            "spec": {"nodeName": node, "containers": [{"name": "dind", "image": "docker"}]},
        }
        await core_api.create_namespaced_pod(NAMESPACE, daemon)
        await kubelet.set_status(name, {"phase": "Running"})
    executor.sticky_builds = True
    executor.build_daemon_label_selector = "component=binderhub-build-daemon"
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    pod = await kubelet.wait_for_pod(POD)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert_valid(pod)
    preferred = pod["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    expected = pick_sticky_node(REQUEST.repo_url, nodes)
    assert preferred[0]["preference"]["matchExpressions"][0]["values"] == [expected]


async def test_health_and_versions(executor: KubernetesExecutor) -> None:
    """Health lists pods in the namespace; the API server is emulated."""
    assert await executor.health() == {"namespace": NAMESPACE}
    assert executor.builder_version() == binderhub_service.__version__
    executor.build_image = "registry.example.org:5000/r2d@sha256:abc"
    assert executor.builder_version() == "sha256:abc"
    executor.build_image = "registry.example.org:5000/r2d"
    assert executor.builder_version() == "latest"
    with pytest.raises(ServiceError, match="use_registry"):
        await executor.has_image("anything")


async def test_health_fails_when_the_api_server_does_not_answer() -> None:
    """An API server that does not answer makes health raise."""
    executor = KubernetesExecutor(api_url="http://127.0.0.1:9", namespace=NAMESPACE)
    try:
        with pytest.raises(aiohttp.ClientError):
            await executor.health()
    finally:
        await executor.shutdown()


def test_build_timeout_follows_the_build_manager() -> None:
    config = Config()
    config.BuildManager.build_timeout = 1234
    assert KubernetesExecutor(config=config).build_timeout == 1234
    assert KubernetesExecutor().build_timeout == 3600


def test_registered_as_entry_point() -> None:
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    with pyproject.open("rb") as f:
        executors = tomllib.load(f)["project"]["entry-points"]["binderhub_service.executors"]
    entry_point = EntryPoint("kubernetes", executors["kubernetes"], "binderhub_service.executors")
    assert entry_point.load() is KubernetesExecutor
