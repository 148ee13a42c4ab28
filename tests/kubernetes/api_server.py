"""A small stateful Kubernetes API server for the tests, served by kmock.

:class:`ClusterEmulator` keeps namespaced core objects (pods and Secrets) in
memory and answers the requests a client makes the way a real API server
does, in the parts the executor depends on:

- every write gives the object a new ``metadata.resourceVersion`` (one counter
  for all objects, as etcd's revision), ``uid`` and ``creationTimestamp`` on
  creation; pods start in phase ``Pending``;
- lists and watches honour ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``!k``)
  and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``,
  ``status.phase``, with ``=``, ``==`` and ``!=``);
- a list carries the current resourceVersion; a watch from a resourceVersion
  replays every later event, answers an ``ERROR`` event with ``410 Gone``
  once that version is older than the retained history (``history_limit``
  events, or :meth:`compact`), sends ``BOOKMARK`` events when asked
  (``allowWatchBookmarks``) and ends after ``timeoutSeconds``; a watch
  without a version starts with ``ADDED`` events for what exists;
- patches are JSON merge patches (strategic merge patches are taken as
  such: no list merging); ``/status`` patches change only the status and
  other patches never do;
- deletion is graceful for scheduled, unfinished pods (``spec.nodeName`` set):
  ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` are set, and the
  pod goes once its grace period (``gracePeriodSeconds``, else the pod's
  ``terminationGracePeriodSeconds``, else 30 s, multiplied by
  ``grace_scale`` so that tests stay quick) has passed, as the kubelet would
  make it; finalizers hold any object until they are removed;
- a deletion with ``preconditions`` (``uid``, ``resourceVersion``) that the
  object does not meet is refused with ``409 Conflict``, as for an object that
  replaced the one meant under the same name;
- when an object goes, objects it owns (``ownerReferences`` by uid) are
  garbage-collected, as are objects created or patched with an owner that
  does not exist.

What it does not do is listed in docs/source/explanation/kubernetes-testing.md.
Pod logs are not emulated: tests serve them with kmock reactions.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import kmock

Key = tuple[str, str, str]  # (plural, namespace, name)
KINDS = {"pods": "Pod", "secrets": "Secret"}


@attrs.frozen(kw_only=True)
class ApiError(kmock.KubernetesError):
    """An error answered with a Kubernetes ``Status`` of this code."""

    status: int
    reason: str
    message: str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` removes a key, other values replace."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """The test of an equality-based label selector."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:]: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(test(labels) for test in tests)


_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "metadata.name": lambda obj: obj["metadata"].get("name"),
    "metadata.namespace": lambda obj: obj["metadata"].get("namespace"),
    "status.phase": lambda obj: (obj.get("status") or {}).get("phase"),
}


def field_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """The test of a field selector; unsupported fields are refused with 400."""
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in filter(None, (part.strip() for part in selector.split(","))):
        negate = "!=" in term
        field, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if field not in _FIELDS:
            raise ApiError(
                status=400, reason="BadRequest", message=f'field label not supported: "{field}"'
            )
        read = _FIELDS[field]
        tests.append(lambda obj, r=read, v=value, n=negate: (str(r(obj)) == v) != n)
    return lambda obj: all(test(obj) for test in tests)


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesScaffold):
    """The stateful API server described in this module's docstring."""

    history_limit: int = 1000
    grace_scale: float = 0.01
    bookmark_interval: float = 0.5
    objects: dict[Key, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # (resourceVersion, plural, event), oldest first.
    history: list[tuple[int, str, dict[str, Any]]] = attrs.field(factory=list, init=False)
    revision: int = attrs.field(default=1, init=False)
    # The oldest resourceVersion a watch may start from.
    oldest: int = attrs.field(default=1, init=False)
    # Set (and replaced) at every change: watches wait on it.
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for plural, kind in KINDS.items():
            self.resources[f"v1/{plural}"] = kmock.ResourceInfo(namespaced=True, kind=kind)
        self.fallback[kmock.action.LIST] << self._serve_list
        self.fallback[kmock.action.WATCH] << self._serve_list
        self.fallback[kmock.action.FETCH] << self._serve_fetch
        self.fallback[kmock.action.CREATE] << self._serve_create
        self.fallback[kmock.action.UPDATE] << self._serve_patch
        self.fallback[kmock.action.DELETE] << self._serve_delete

    # Storage -----------------------------------------------------------------

    def _record(self, plural: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Give ``obj`` the next resourceVersion and keep the event."""
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        snapshot = copy.deepcopy(obj)
        self.history.append((self.revision, plural, {"type": kind, "object": snapshot}))
        self._changed.set()
        self._changed = asyncio.Event()
        if len(self.history) > self.history_limit:
            dropped = self.history.pop(0)
            self.oldest = dropped[0]
        return obj

    def compact(self) -> None:
        """Forget all history, as etcd's compaction does: older watches get 410."""
        self.history.clear()
        self.oldest = self.revision

    def _key(self, request: kmock.Request, name: str | None = None) -> Key:
        assert request.resource is not None
        plural = request.resource.plural
        if plural not in KINDS:
            raise kmock.KubernetesResourceNotFoundError()
        return (plural, request.namespace or "", name or request.name or "")

    def _get(self, key: Key) -> dict[str, Any]:
        if key not in self.objects:
            raise ApiError(status=404, reason="NotFound", message=f'{key[0]} "{key[2]}" not found')
        return self.objects[key]

    def _remove(self, key: Key) -> None:
        """The object goes for good: a DELETED event, then what it owned goes too."""
        obj = self.objects.pop(key)
        obj = self._record(key[0], "DELETED", obj)
        uid = obj["metadata"].get("uid")
        for other_key, other in list(self.objects.items()):
            owners = other["metadata"].get("ownerReferences") or []
            if any(owner.get("uid") == uid for owner in owners):
                self._delete(other_key, grace=0)

    def _collect_orphan(self, key: Key) -> None:
        """Garbage-collect ``key`` when none of its owners exists (dangling references)."""
        owners = self.objects[key]["metadata"].get("ownerReferences") or []
        uids = {obj["metadata"].get("uid") for obj in self.objects.values()}
        if owners and not any(owner.get("uid") in uids for owner in owners):
            self._delete(key, grace=0)

    def _delete(self, key: Key, grace: int | None) -> dict[str, Any]:
        obj = self.objects[key]
        metadata = obj["metadata"]
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        graceful = (
            key[0] == "pods" and spec.get("nodeName") and phase not in ("Succeeded", "Failed")
        )
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", 30)) if graceful else 0
        if not graceful:
            grace = 0
        if grace == 0 and not metadata.get("finalizers"):
            self._remove(key)
            return obj
        if "deletionTimestamp" not in metadata or grace < metadata.get(
            "deletionGracePeriodSeconds", grace + 1
        ):
            metadata["deletionTimestamp"] = _now()
            metadata["deletionGracePeriodSeconds"] = grace
            self._record(key[0], "MODIFIED", obj)
            uid = metadata.get("uid")
            asyncio.get_running_loop().call_later(
                grace * self.grace_scale, self._grace_over, key, uid
            )
        return obj

    def _grace_over(self, key: Key, uid: str | None) -> None:
        obj = self.objects.get(key)
        if obj is None or obj["metadata"].get("uid") != uid:
            return
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        if not obj["metadata"].get("finalizers"):
            self._remove(key)

    # Handlers ----------------------------------------------------------------

    def _matcher(self, request: kmock.Request) -> Callable[[dict[str, Any]], bool]:
        labels = label_matcher(request.params.get("labelSelector", ""))
        fields = field_matcher(request.params.get("fieldSelector", ""))
        namespace = request.namespace
        return lambda obj: (
            (namespace is None or obj["metadata"].get("namespace") == namespace)
            and labels(obj["metadata"].get("labels") or {})
            and fields(obj)
        )

    def _serve_list(self, request: kmock.Request) -> Any:
        plural = self._key(request)[0]
        matches = self._matcher(request)
        if request.params.get("watch", "").lower() in ("true", "1"):
            return self._watch(request, plural, matches)
        items = [
            obj for key, obj in sorted(self.objects.items()) if key[0] == plural and matches(obj)
        ]
        limit = int(request.params.get("limit") or 0)
        return {
            "apiVersion": "v1",
            "kind": f"{KINDS[plural]}List",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": items[:limit] if limit else items,
        }

    async def _watch(
        self, request: kmock.Request, plural: str, matches: Callable[[dict[str, Any]], bool]
    ) -> AsyncIterator[Any]:
        yield b""  # send the headers now, as a real API server does
        since = request.params.get("resourceVersion") or "0"
        loop = asyncio.get_running_loop()
        timeout = float(request.params.get("timeoutSeconds") or 1800)
        deadline = loop.time() + timeout
        bookmarks = request.params.get("allowWatchBookmarks", "").lower() == "true"
        if since == "0":
            for key, obj in sorted(self.objects.items()):
                if key[0] == plural and matches(obj):
                    yield {"type": "ADDED", "object": obj}
            seen = self.revision
        else:
            seen = int(since)
            if seen < self.oldest:
                yield {
                    "type": "ERROR",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Status",
                        "status": "Failure",
                        "code": 410,
                        "reason": "Expired",
                        "message": f"too old resource version: {seen} ({self.oldest})",
                    },
                }
                return
        next_bookmark = loop.time() + self.bookmark_interval
        while loop.time() < deadline:
            for revision, kind, event in list(self.history):
                if revision > seen and kind == plural:
                    seen = revision
                    if matches(event["object"]):
                        yield event
            seen = max(seen, self.revision)
            if bookmarks and loop.time() >= next_bookmark:
                next_bookmark = loop.time() + self.bookmark_interval
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": "v1",
                        "kind": KINDS[plural],
                        "metadata": {"resourceVersion": str(seen)},
                    },
                }
            wait = min(deadline, next_bookmark) - loop.time()
            if self.revision <= seen:
                try:
                    async with asyncio.timeout(max(0.0, wait)):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    def _serve_fetch(self, request: kmock.Request) -> Any:
        if request.subresource == "log":
            raise ApiError(status=404, reason="NotFound", message="no log is served for this pod")
        return self._get(self._key(request))

    async def _serve_create(self, request: kmock.Request) -> Any:
        obj = dict(request.data or {})
        metadata = dict(obj.get("metadata") or {})
        key = self._key(request, metadata.get("name"))
        if not key[2]:
            raise ApiError(status=422, reason="Invalid", message="metadata.name: Required value")
        if key in self.objects:
            raise ApiError(
                status=409, reason="AlreadyExists", message=f'{key[0]} "{key[2]}" already exists'
            )
        metadata.update(namespace=key[1], uid=str(uuid.uuid4()), creationTimestamp=_now())
        obj["metadata"] = metadata
        if key[0] == "pods":
            obj["status"] = {"phase": "Pending"}
        self.objects[key] = obj
        self._record(key[0], "ADDED", obj)
        self._collect_orphan(key)
        return obj

    async def _serve_patch(self, request: kmock.Request) -> Any:
        key = self._key(request)
        obj = self._get(key)
        patch = request.data
        if not isinstance(patch, Mapping):
            raise ApiError(
                status=415, reason="UnsupportedMediaType", message="only merge patches are emulated"
            )
        if request.subresource == "status":
            patch = {"status": patch.get("status")}
        else:
            patch = {k: v for k, v in patch.items() if k != "status"}
        metadata = patch.get("metadata") or {}
        for fixed in ("uid", "name", "namespace", "creationTimestamp", "deletionTimestamp"):
            metadata.pop(fixed, None)
        patched = merge_patch(obj, patch)
        self.objects[key] = patched
        self._record(key[0], "MODIFIED", patched)
        meta = patched["metadata"]
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            if meta.get("deletionGracePeriodSeconds", 0) == 0:
                self._remove(key)
        elif key in self.objects:
            self._collect_orphan(key)
        return patched

    async def _serve_delete(self, request: kmock.Request) -> Any:
        key = self._key(request)
        current = self._get(key)["metadata"]
        body = request.data if isinstance(request.data, Mapping) else {}
        for field in ("uid", "resourceVersion"):
            wanted = (body.get("preconditions") or {}).get(field)
            if wanted is not None and wanted != current.get(field):
                raise ApiError(
                    status=409,
                    reason="Conflict",
                    message=f"Precondition failed: {field} in precondition: {wanted},"
                    f" {field} in object meta: {current.get(field)}",
                )
        grace = request.params.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        obj = self._delete(key, None if grace is None else int(grace))
        return obj
