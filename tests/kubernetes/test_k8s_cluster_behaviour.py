"""The Kubernetes executor where a real cluster differs from a quiet one.

Every test here runs against kmock's emulated API server (through the real
kubernetes_asyncio client); the test plays the kubelet. Two installations in
one namespace, pods that already exist, terminate or finished while no service
ran, Secrets that race their pod, image pulls that fail, API outages and
refusals, log streams that go silent or fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest
from api_server import ClusterEmulator
from k8s_emulator import NAMESPACE, EmulatorProxy, Kubelet, LogSource, Recorder, r2d
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets.config import Config

from binderhub_service.errors import BuildFailed
from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.kubernetes import KubernetesExecutor
from binderhub_service.executors.pod import BuildPodOptions, build_pod_name, make_build_pod

REQUEST = BuildRequest(
    build_id="b1",
    provider="git",
    repo_url="https://git.example.org/org/repo",
    ref="0123456789abcdef0123456789abcdef01234567",
    image_name="registry.example.org/binder/org-repo:0123456789ab",
    push=True,
)
POD = build_pod_name(REQUEST.repo_url, REQUEST.ref)
PRIVATE = dataclasses.replace(REQUEST, git_credential="username=x\\npassword=tok")
SECRET = f"{POD}-git-credential"

Logs = Callable[[str], LogSource]


def quick(emulator: EmulatorProxy, **traits: object) -> KubernetesExecutor:
    """An executor of the emulated API server with quick retries, as the fixture's."""
    settings: dict[str, object] = {
        "api_url": emulator.url,
        "namespace": NAMESPACE,
        "watch_retry_delay": 0.01,
        "watch_max_retry_delay": 0.05,
        "watch_give_up_after": 0.5,
        "log_drain_timeout": 2,
        **traits,
    }
    return KubernetesExecutor(**settings)


async def create_pod(
    core_api: CoreV1Api, request: BuildRequest = REQUEST, **options: object
) -> dict:
    """Create a build pod as an earlier run of the service (or another service) would."""
    executor = KubernetesExecutor()
    manifest = make_build_pod(
        BuildPodOptions(
            build_id=request.build_id,
            repo2docker=executor.repo2docker_options(request),
            namespace=NAMESPACE,
            **options,  # type: ignore[arg-type]
        )
    )
    created = await core_api.create_namespaced_pod(NAMESPACE, manifest)
    return core_api.api_client.sanitize_for_serialization(created)


async def pod_exists(core_api: CoreV1Api, name: str) -> bool:
    try:
        await core_api.read_namespaced_pod(name, NAMESPACE)
    except ApiException as error:
        assert error.status == 404
        return False
    return True


@pytest.fixture
async def two_installations(
    emulator: EmulatorProxy,
) -> AsyncIterator[tuple[KubernetesExecutor, KubernetesExecutor]]:
    first = quick(emulator, extra_labels={"app.kubernetes.io/instance": "one"})
    second = quick(emulator, extra_labels={"app.kubernetes.io/instance": "two"})
    try:
        yield first, second
    finally:
        await first.shutdown()
        await second.shutdown()


async def test_two_installations_build_apart_and_cancel_only_their_own(
    two_installations: tuple[KubernetesExecutor, KubernetesExecutor],
    kubelet: Kubelet,
    pod_logs: Logs,
    core_api: CoreV1Api,
) -> None:
    """Two releases, one namespace, one repository: two pods; the API server is emulated."""
    first, second = two_installations
    assert (first.instance, second.instance) == ("one", "two")
    names = [build_pod_name(REQUEST.repo_url, REQUEST.ref, i) for i in ("one", "two")]
    assert names[0] != names[1]
    logs = [pod_logs(name) for name in names]
    emits = [Recorder(), Recorder()]
    runs = [
        asyncio.create_task(executor.run(REQUEST, emit))
        for executor, emit in zip(two_installations, emits, strict=True)
    ]
    pods = [await kubelet.wait_for_pod(name) for name in names]
    assert [pod["metadata"]["labels"]["app.kubernetes.io/instance"] for pod in pods] == [
        "one",
        "two",
    ]
    for name in names:
        await kubelet.running(name)
    for emit in emits:
        await emit.wait_for("created")
    assert [b.pod_name for b in await first.find_build_pods()] == [names[0]]

    runs[0].cancel()
    await asyncio.gather(runs[0], return_exceptions=True)
    await kubelet.wait_for_deletion(names[0])
    assert await pod_exists(core_api, names[1])

    await logs[1].write(r2d("built", "pushing"))
    await logs[1].close()
    await kubelet.terminated(names[1], 0)
    await asyncio.wait_for(runs[1], 5)
    assert "built" in emits[1].messages
    await logs[0].close()


@pytest.mark.parametrize(
    "options",
    [
        {"extra_labels": {"app.kubernetes.io/instance": "someone-else"}},
        {"repo2docker_image": "registry.example.org/other:1"},
    ],
    ids=["other-installation", "other-image"],
)
async def test_a_pod_that_is_not_ours_is_never_joined_nor_deleted(
    executor: KubernetesExecutor, core_api: CoreV1Api, options: dict
) -> None:
    """409 on a foreign pod of the name fails clearly; the API server is emulated."""
    request = REQUEST
    if "repo2docker_image" in options:
        request = dataclasses.replace(REQUEST, image_name=options.pop("repo2docker_image"))
    await create_pod(core_api, request, **options)
    emit = Recorder()
    with pytest.raises(BuildFailed, match="not this service's build"):
        await asyncio.wait_for(executor.run(REQUEST, emit), 5)
    assert not any("Attaching" in message for message in emit.messages)
    await executor.shutdown()  # runs any deletion still pending
    assert await pod_exists(core_api, POD)


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
async def test_reattaching_to_a_pod_that_finished_meanwhile_replays_it(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    core_api: CoreV1Api,
    outcome: str,
) -> None:
    """A pod that ended during a restart reports its real outcome; the API server is emulated.

    ``recover()`` runs after the reconciliation has started the reattach (as
    ``serve()`` does) and leaves that pod alone.
    """
    await create_pod(core_api)
    logs = pod_logs(POD)
    await logs.write(r2d("before", "building"), r2d("while down", "pushing"))
    if outcome == "Failed":
        await logs.write(r2d("Error: broken", "failed"))
    await logs.close()
    await kubelet.terminated(POD, 0 if outcome == "Succeeded" else 1)

    emit = Recorder()
    reattached = asyncio.create_task(executor.reattach(REQUEST, emit))
    await executor.recover()
    if outcome == "Succeeded":
        await asyncio.wait_for(reattached, 5)
    else:
        with pytest.raises(BuildFailed, match="could not build this repository"):
            await asyncio.wait_for(reattached, 5)
    relayed = [m for m in emit.messages if m in ("before", "while down")]
    assert relayed == ["before", "while down"]
    await kubelet.wait_for_deletion(POD)


async def test_a_pod_that_never_finishes_terminating_fails_the_build(
    executor: KubernetesExecutor, kubelet: Kubelet, core_api: CoreV1Api
) -> None:
    """Waiting for a terminating pod is bounded; the API server is emulated."""
    await create_pod(core_api)
    await core_api.patch_namespaced_pod(
        POD, NAMESPACE, {"metadata": {"finalizers": ["example.org/hold"]}}
    )
    await core_api.delete_namespaced_pod(POD, NAMESPACE)
    executor.terminating_pod_timeout = 0.3
    with pytest.raises(BuildFailed, match="still terminating"):
        await asyncio.wait_for(executor.run(REQUEST, Recorder()), 5)
    await core_api.patch_namespaced_pod(POD, NAMESPACE, {"metadata": {"finalizers": []}})


async def test_a_followed_pod_being_deleted_fails_at_once(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, core_api: CoreV1Api
) -> None:
    """deletionTimestamp on the build's pod (its node lost) ends it; the API server is emulated."""
    logs = pod_logs(POD)
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await core_api.patch_namespaced_pod(
        POD, NAMESPACE, {"metadata": {"finalizers": ["example.org/hold"]}}
    )
    await core_api.delete_namespaced_pod(POD, NAMESPACE)
    with pytest.raises(BuildFailed, match="being deleted"):
        await asyncio.wait_for(run, 5)
    await core_api.patch_namespaced_pod(POD, NAMESPACE, {"metadata": {"finalizers": []}})
    await logs.close()


async def test_the_secret_exists_before_its_pod_and_is_then_owned_by_it(
    executor: KubernetesExecutor,
    kubelet: Kubelet,
    pod_logs: Logs,
    core_api: CoreV1Api,
    emulator: EmulatorProxy,
) -> None:
    """A leftover Secret is replaced, the kubelet's retried config error does not fail the build.

    The API server is emulated.
    """
    leftover = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "stringData": {"GIT_CREDENTIAL_ENV": "old"},
    }
    await core_api.create_namespaced_secret(NAMESPACE, leftover)
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(PRIVATE, emit))
    pod = await kubelet.wait_for_pod(POD)
    creations = [
        path.rsplit("/", 1)[-1] for method, path, _ in emulator.requests if method == "POST"
    ]
    assert creations[-3:] == ["secrets", "secrets", "pods"]  # 409, created, then the pod
    async with asyncio.timeout(5):
        while True:
            secret = core_api.api_client.sanitize_for_serialization(
                await core_api.read_namespaced_secret(SECRET, NAMESPACE)
            )
            if secret["metadata"].get("ownerReferences"):
                break
            await asyncio.sleep(0.02)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    assert secret["stringData"] == {"GIT_CREDENTIAL_ENV": PRIVATE.git_credential}

    await kubelet.waiting(POD, "CreateContainerConfigError", f'secret "{SECRET}" not found')
    await emit.wait_for("CreateContainerConfigError")
    await kubelet.running(POD)
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)


async def test_a_lasting_container_config_error_fails_after_its_grace(
    executor: KubernetesExecutor, kubelet: Kubelet
) -> None:
    """CreateContainerConfigError fails the build only once it lasts; API server emulated."""
    executor.container_config_grace = 0.3
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.waiting(POD, "CreateContainerConfigError", 'secret "x" not found')
    with pytest.raises(BuildFailed, match='CreateContainerConfigError: secret "x" not found'):
        await asyncio.wait_for(run, 5)


async def test_an_image_that_cannot_be_pulled_fails_within_the_pull_timeout(
    executor: KubernetesExecutor, kubelet: Kubelet
) -> None:
    """ErrImagePull/ImagePullBackOff fail with the kubelet's message; API server emulated."""
    executor.image_pull_timeout = 0.5
    message = 'Back-off pulling image "registry.example.org/r2d:nope"'
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await kubelet.waiting(POD, "ErrImagePull", "manifest unknown")
    await asyncio.sleep(0.2)
    # Switching between the two reasons does not restart the clock.
    await kubelet.waiting(POD, "ImagePullBackOff", message)
    with pytest.raises(BuildFailed, match="could not be pulled: Back-off pulling image"):
        await asyncio.wait_for(run, 5)
    assert loop.time() - began < 1.5


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: ephemeral-storage.",
            },
            "evicted from its node: The node was low on resource: ephemeral-storage.",
        ),
        ({"phase": "Failed", "message": "Pod was rejected: Node didn't have enough"}, "rejected"),
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
                        "state": {
                            "terminated": {
                                "exitCode": 2,
                                "message": '{"message": "Step 1/2"}\n'
                                "Error: Cannot connect to the Docker daemon\n",
                            }
                        },
                    }
                ],
            },
            "exited with code 2: Error: Cannot connect to the Docker daemon",
        ),
    ],
    ids=["evicted", "status-message", "termination-message"],
)
async def test_failures_quote_the_kubelet_and_the_container(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, status: dict, reason: str
) -> None:
    """status.message and the termination message explain a failure; API server emulated."""
    logs = pod_logs(POD)
    await logs.close()
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.set_status(POD, status)
    with pytest.raises(BuildFailed, match=reason):
        await asyncio.wait_for(run, 5)


async def test_an_api_outage_shorter_than_the_build_does_not_fail_it(
    emulator: EmulatorProxy, kubelet: Kubelet, pod_logs: Logs
) -> None:
    """The watch gives up only after the build timeout; the API server is emulated."""
    executor = quick(emulator, watch_give_up_after=5)
    try:
        logs = pod_logs(POD)
        emit = Recorder()
        run = asyncio.create_task(executor.run(REQUEST, emit))
        await kubelet.wait_for_pod(POD)
        await kubelet.running(POD)
        await logs.write(r2d("before", "building"))
        await emit.wait_for("before")
        emulator.outage = True
        await asyncio.sleep(1)  # longer than the fixture's give-up of 0.5 s
        emulator.outage = False
        await logs.write(r2d("after", "pushing"))
        await logs.close()
        await kubelet.terminated(POD, 0)
        await asyncio.wait_for(run, 5)
        assert emit.messages.count("before") == 1
        assert emit.messages.count("after") == 1
    finally:
        await executor.shutdown()


def test_watch_give_up_follows_the_build_timeout() -> None:
    config = Config()
    config.BuildManager.build_timeout = 1800
    assert KubernetesExecutor(config=config).watch_give_up_after == 1800
    assert KubernetesExecutor(build_timeout=0).watch_give_up_after == 3600


@pytest.mark.parametrize(("status", "reason"), [(401, "credentials"), (403, "check its Role")])
async def test_refusals_are_reported_as_such(
    executor: KubernetesExecutor, emulator: EmulatorProxy, status: int, reason: str
) -> None:
    """401 and 403 say what to check, at once; the API server is emulated."""
    emulator.deny = status
    executor.watch_give_up_after = 60
    with pytest.raises(BuildFailed, match=reason) as failure:
        await asyncio.wait_for(executor.run(REQUEST, Recorder()), 5)
    assert f"HTTP {status}" in str(failure.value)


async def test_a_refused_watch_fails_the_build_at_once(
    executor: KubernetesExecutor, kubelet: Kubelet, emulator: EmulatorProxy
) -> None:
    """A 403 mid-build (a Role changed) is not retried as an outage; API server emulated."""
    executor.watch_give_up_after = 60
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    emulator.deny = 403
    emulator.end_watches()
    with pytest.raises(BuildFailed, match="HTTP 403"):
        await asyncio.wait_for(run, 5)
    emulator.deny = None


async def test_the_log_relay_outlasts_failures_and_silence(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, emulator: EmulatorProxy
) -> None:
    """Log errors longer than the watch give-up and a silent stream lose nothing; emulated API."""
    executor.log_read_timeout = 0.3
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    await logs.write(r2d("one", "building"))
    await emit.wait_for("one")
    before = logs.requests
    await asyncio.sleep(0.8)  # silent: the stream is opened again
    assert logs.requests > before
    emulator.fail_logs = 40  # failing for longer than watch_give_up_after (0.5 s)
    await logs.write(r2d("two", "building"))
    async with asyncio.timeout(5):
        while emulator.fail_logs:
            await asyncio.sleep(0.05)
    await emit.wait_for("two")
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)
    assert emit.messages.count("one") == 1
    assert emit.messages.count("two") == 1


async def test_the_connection_pool_fits_the_concurrent_builds(emulator: EmulatorProxy) -> None:
    config = Config()
    config.BuildManager.max_concurrent_builds = 80
    executor = KubernetesExecutor(config=config, api_url=emulator.url, namespace=NAMESPACE)
    try:
        assert executor.connection_pool_size == 170
        api = await executor._api()
        assert api.api_client.configuration.connection_pool_maxsize == 170
    finally:
        await executor.shutdown()
    assert KubernetesExecutor().connection_pool_size == 100


async def test_a_terminating_pod_is_waited_out_and_replaced(
    executor: KubernetesExecutor, kubelet: Kubelet, pod_logs: Logs, core_api: CoreV1Api
) -> None:
    """A pod being deleted is never joined; the API server is emulated (a finalizer holds it)."""
    old = await create_pod(core_api)
    await core_api.patch_namespaced_pod(
        POD, NAMESPACE, {"metadata": {"finalizers": ["example.org/hold"]}}
    )
    await core_api.delete_namespaced_pod(POD, NAMESPACE)
    assert (await kubelet.wait_for_pod(POD))["metadata"]["deletionTimestamp"]
    logs = pod_logs(POD)
    emit = Recorder()
    run = asyncio.create_task(executor.run(REQUEST, emit))
    await emit.wait_for("Waiting for the old build pod")
    assert not any("Attaching" in message for message in emit.messages)
    await core_api.patch_namespaced_pod(POD, NAMESPACE, {"metadata": {"finalizers": []}})
    await emit.wait_for("created")
    new = await kubelet.wait_for_pod(POD)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    await logs.close()
    await kubelet.terminated(POD, 0)
    await asyncio.wait_for(run, 5)


async def test_deletions_spare_a_pod_and_secret_that_replaced_the_ones_meant(
    emulator: EmulatorProxy, kubelet: Kubelet, core_api: CoreV1Api
) -> None:
    """Deletes carry uid preconditions: a later build's pod and Secret of the same names stay.

    The API server is emulated (it refuses a deletion whose uid precondition fails with 409).
    """
    executor = quick(emulator, delete_finished_pods_after=0.5)
    try:
        run = asyncio.create_task(executor.run(PRIVATE, Recorder()))
        await kubelet.wait_for_pod(POD)
        await core_api.delete_namespaced_pod(POD, NAMESPACE)
        with pytest.raises(BuildFailed, match="deleted"):
            await asyncio.wait_for(run, 5)
        # (Its Secret went with it.) Another build takes the names before this
        # one's delayed deletion comes.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}}
        await core_api.create_namespaced_secret(NAMESPACE, secret)
        replacement = await create_pod(core_api)
        await asyncio.sleep(1)
        kept = await core_api.read_namespaced_pod(POD, NAMESPACE)
        assert kept.metadata.uid == replacement["metadata"]["uid"]
        assert (await core_api.read_namespaced_secret(SECRET, NAMESPACE)).metadata.name
    finally:
        await executor.shutdown()
    assert await pod_exists(core_api, POD)


async def test_a_pod_replaced_unseen_is_not_followed_nor_deleted(
    executor: KubernetesExecutor,
    emulator: EmulatorProxy,
    kubelet: Kubelet,
    kmock: ClusterEmulator,
    core_api: CoreV1Api,
) -> None:
    """A pod replaced while the watch was down is told apart by its uid; API server emulated."""
    run = asyncio.create_task(executor.run(REQUEST, Recorder()))
    await kubelet.wait_for_pod(POD)
    await kubelet.running(POD)
    executor.watch_give_up_after = 30
    emulator.outage = True
    emulator.end_watches()
    # Behind the proxy's back the pod goes and another takes its name; the
    # executor's next watch finds its history expired and lists again.
    async with ApiClient(Configuration(host=str(kmock.url))) as direct_client:
        direct = CoreV1Api(direct_client)
        await direct.delete_namespaced_pod(POD, NAMESPACE, grace_period_seconds=0)
        replacement = await create_pod(direct)
    kmock.compact()
    emulator.outage = False
    with pytest.raises(BuildFailed, match="deleted"):
        await asyncio.wait_for(run, 5)
    await asyncio.sleep(0.3)
    kept = await core_api.read_namespaced_pod(POD, NAMESPACE)
    assert kept.metadata.uid == replacement["metadata"]["uid"]
