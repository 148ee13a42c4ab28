"""The emulated API server itself (tests/kubernetes/api_server.py), through the real client.

These check that the emulator behaves as a Kubernetes API server does in the
parts the executor's tests rely on; the API server is emulated by definition.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from api_server import ClusterEmulator
from k8s_emulator import NAMESPACE
from kubernetes_asyncio.client import CoreV1Api, V1DeleteOptions, V1Preconditions
from kubernetes_asyncio.client.exceptions import ApiException


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


async def raw_list(core_api: CoreV1Api, **query: Any) -> dict[str, Any]:
    response = await core_api.list_namespaced_pod(NAMESPACE, _preload_content=False, **query)
    return json.loads(await response.read())


async def watch_events(core_api: CoreV1Api, **query: Any) -> list[dict[str, Any]]:
    """Every event of one watch request, until the server ends it."""
    response = await core_api.list_namespaced_pod(
        NAMESPACE, watch=True, _preload_content=False, **query
    )
    body = await response.read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


async def test_objects_get_versions_uids_and_a_pending_phase(core_api: CoreV1Api) -> None:
    """resourceVersion grows with every write; a new pod is Pending; emulated API server."""
    created = await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    assert created.metadata.uid and created.status.phase == "Pending"
    first = int(created.metadata.resource_version)
    patched = await core_api.patch_namespaced_pod(
        "a", NAMESPACE, {"metadata": {"labels": {"x": "1"}}}
    )
    assert int(patched.metadata.resource_version) > first
    listing = await raw_list(core_api)
    assert int(listing["metadata"]["resourceVersion"]) >= int(patched.metadata.resource_version)
    with pytest.raises(ApiException) as conflict:
        await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    assert conflict.value.status == 409


async def test_label_and_field_selectors(core_api: CoreV1Api) -> None:
    """Lists keep only matching objects; the API server is emulated."""
    for name, labels in (("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})):
        await core_api.create_namespaced_pod(NAMESPACE, pod(name, **labels))

    async def names(**query: Any) -> list[str]:
        return [item["metadata"]["name"] for item in (await raw_list(core_api, **query))["items"]]

    assert await names(label_selector="app=x") == ["a"]
    assert await names(label_selector="app!=x") == ["b", "c"]
    assert await names(label_selector="app") == ["a", "b"]
    assert await names(label_selector="!app") == ["c"]
    assert await names(label_selector="app=x,tier=1") == ["a"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="status.phase!=Pending") == []
    with pytest.raises(ApiException) as refused:
        await core_api.list_namespaced_pod(NAMESPACE, field_selector="spec.nodeName=n")
    assert refused.value.status == 400


async def test_a_watch_replays_from_its_version_and_expires(
    core_api: CoreV1Api, kmock: ClusterEmulator
) -> None:
    """Events after the version come back; compacted versions get 410; emulated API server."""
    listing = await raw_list(core_api)
    since = listing["metadata"]["resourceVersion"]
    await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    await core_api.delete_namespaced_pod("a", NAMESPACE)
    events = await watch_events(core_api, resource_version=since, timeout_seconds=1)
    assert [event["type"] for event in events] == ["ADDED", "DELETED"]

    kmock.compact()
    events = await watch_events(core_api, resource_version=since, timeout_seconds=1)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


async def test_watches_send_bookmarks_and_end_after_their_timeout(
    core_api: CoreV1Api, kmock: ClusterEmulator
) -> None:
    """timeoutSeconds ends a watch; allowWatchBookmarks brings bookmarks; emulated API server."""
    kmock.bookmark_interval = 0.2
    loop = asyncio.get_running_loop()
    began = loop.time()
    events = await watch_events(core_api, allow_watch_bookmarks=True, timeout_seconds=1)
    assert 0.9 < loop.time() - began < 3
    assert events and all(event["type"] == "BOOKMARK" for event in events)
    assert events[-1]["object"]["metadata"]["resourceVersion"]


async def test_graceful_deletion_and_finalizers(core_api: CoreV1Api) -> None:
    """A scheduled pod terminates for its grace period; finalizers hold; emulated API server."""
    await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    await core_api.patch_namespaced_pod("a", NAMESPACE, {"spec": {"nodeName": "n"}})
    await core_api.delete_namespaced_pod("a", NAMESPACE, grace_period_seconds=20)
    terminating = await core_api.read_namespaced_pod("a", NAMESPACE)
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.deletion_grace_period_seconds == 20
    await asyncio.sleep(0.4)  # 20 s scaled by grace_scale (0.01)
    with pytest.raises(ApiException) as gone:
        await core_api.read_namespaced_pod("a", NAMESPACE)
    assert gone.value.status == 404

    await core_api.create_namespaced_pod(NAMESPACE, pod("b"))
    await core_api.patch_namespaced_pod("b", NAMESPACE, {"metadata": {"finalizers": ["x/y"]}})
    await core_api.delete_namespaced_pod("b", NAMESPACE)
    held = await core_api.read_namespaced_pod("b", NAMESPACE)
    assert held.metadata.deletion_timestamp is not None
    await core_api.patch_namespaced_pod("b", NAMESPACE, {"metadata": {"finalizers": []}})
    with pytest.raises(ApiException):
        await core_api.read_namespaced_pod("b", NAMESPACE)


async def test_owned_secrets_go_with_their_owner(core_api: CoreV1Api) -> None:
    """Owner-reference garbage collection, dangling owners included; emulated API server."""
    owner = await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    reference = {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": owner.metadata.uid}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    await core_api.create_namespaced_secret(NAMESPACE, secret)
    await core_api.patch_namespaced_secret(
        "s", NAMESPACE, {"metadata": {"ownerReferences": [reference]}}
    )
    await core_api.delete_namespaced_pod("a", NAMESPACE)
    with pytest.raises(ApiException):
        await core_api.read_namespaced_secret("s", NAMESPACE)

    dangling = {**secret, "metadata": {"name": "t", "ownerReferences": [reference]}}
    await core_api.create_namespaced_secret(NAMESPACE, dangling)
    with pytest.raises(ApiException):
        await core_api.read_namespaced_secret("t", NAMESPACE)


async def test_deletion_preconditions(core_api: CoreV1Api) -> None:
    """A deletion meant for another uid is refused with 409 and deletes nothing; emulated."""
    first = await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    await core_api.delete_namespaced_pod("a", NAMESPACE)
    await core_api.create_namespaced_pod(NAMESPACE, pod("a"))
    meant_first = V1DeleteOptions(preconditions=V1Preconditions(uid=first.metadata.uid))
    with pytest.raises(ApiException) as refused:
        await core_api.delete_namespaced_pod("a", NAMESPACE, body=meant_first)
    assert refused.value.status == 409
    assert "Precondition failed" in json.loads(refused.value.body)["message"]
    replacement = await core_api.read_namespaced_pod("a", NAMESPACE)
    meant_it = V1DeleteOptions(preconditions=V1Preconditions(uid=replacement.metadata.uid))
    await core_api.delete_namespaced_pod("a", NAMESPACE, body=meant_it)
    with pytest.raises(ApiException) as gone:
        await core_api.read_namespaced_pod("a", NAMESPACE)
    assert gone.value.status == 404
