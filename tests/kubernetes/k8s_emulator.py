"""Test helpers for the Kubernetes executor: manifest validation, an emulated API server.

The API server is :class:`api_server.ClusterEmulator` (served by kmock); an
:class:`EmulatorProxy` in front of it injects failures and records requests;
:class:`Kubelet` plays the node agent and :class:`LogSource` serves logs.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kmock as kmock_module
import kubernetes_validate
import pytest
import yarl
from aiohttp import web
from api_server import ClusterEmulator
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import MultiDict

from binderhub_service.events import BuildEvent
from binderhub_service.executors.kubernetes import KubernetesExecutor

KUBERNETES_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "builds"


@pytest.fixture
def assert_valid() -> Callable[[dict[str, Any]], None]:
    """Fail unless a manifest is valid (unknown fields rejected) for the newest Kubernetes."""

    def check(manifest: dict[str, Any]) -> None:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)

    return check


def r2d(message: str, phase: str | None = None) -> str:
    """A repo2docker JSON log line."""
    line = {"message": message + "\n"}
    if phase:
        line["phase"] = phase
    return json.dumps(line)


class Recorder:
    """Collects emitted events; lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[BuildEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: BuildEvent) -> None:
        self.events.append(event)
        self._changed.set()

    @property
    def messages(self) -> list[str]:
        return [event.message.rstrip("\n") for event in self.events]

    async def wait_for(self, text: str, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in message for message in self.messages):
                self._changed.clear()
                await self._changed.wait()


class EmulatorProxy:
    """An HTTP proxy in front of the emulated API server, for tests only.

    Tests make requests fail through it: ``fail_watches`` answers the next
    watch requests with 500, ``expire_watches`` answers them with a 410 Gone
    event, as an API server does when a resourceVersion is too old;
    ``fail_logs`` answers the next log requests with 500; while ``outage``
    is set every request gets a 503, and while ``deny`` is set (401 or 403)
    every request gets that answer. ``requests`` records every request the
    proxy saw, as (method, path, query).
    """

    def __init__(self, upstream: yarl.URL) -> None:
        self.upstream = upstream
        self.fail_watches = 0
        self.expire_watches = 0
        self.fail_logs = 0
        self.outage = False
        self.deny: int | None = None
        self.watch_requests = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._watches: set[asyncio.Task[Any]] = set()
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def end_watches(self) -> None:
        """Break every open watch stream, as an API server restart does."""
        for task in self._watches:
            task.cancel()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        query = MultiDict(request.query)
        self.requests.append((request.method, request.path, dict(query)))
        if self.deny is not None:
            reason = "Unauthorized" if self.deny == 401 else "Forbidden"
            return web.json_response(_status(self.deny, reason), status=self.deny)
        if self.outage:
            return web.json_response(_status(503, "ServiceUnavailable"), status=503)
        if request.path.endswith("/log") and self.fail_logs:
            self.fail_logs -= 1
            return web.json_response(_status(500, "InternalError"), status=500)
        if query.get("watch", "").lower() == "true":
            self.watch_requests += 1
            task = asyncio.current_task()
            assert task is not None
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)
            if self.fail_watches:
                self.fail_watches -= 1
                return web.json_response(_status(500, "InternalError"), status=500)
            if self.expire_watches:
                self.expire_watches -= 1
                event = {"type": "ERROR", "object": _status(410, "Expired")}
                return web.Response(text=json.dumps(event) + "\n", content_type="application/json")
        url = self.upstream.with_path(request.path).with_query(query)
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() in ("content-type", "accept")
        }
        body = await request.read()
        async with self._session.request(
            request.method, url, data=body, headers=headers
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response


def _status(code: int, reason: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": f"{reason} (injected by the test proxy)",
    }


class LogSource:
    """A pod's container log, served line by line to every log request as it grows.

    Each line gets the time it was written, as the container runtime records
    it; requests with ``timestamps=true`` get it before each line (RFC 3339
    with nanoseconds, trailing zeros trimmed as the kubelet does) and
    ``sinceTime`` skips earlier lines. ``break_after(n, ...)`` makes the next
    requests end after ``n`` lines (or within the ``n``-th line, with ``cut``),
    as a broken stream does.
    """

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []
        self.closed = False
        self.requests = 0
        self.breaks: list[tuple[int, bool]] = []
        self._changed = asyncio.Condition()

    async def write(self, *lines: str) -> None:
        async with self._changed:
            self.lines.extend((time.time_ns(), line) for line in lines)
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()

    def break_after(self, *counts: int, cut: bool = False) -> None:
        """End each of the next requests after so many lines (cutting the last one short)."""
        self.breaks.extend((count, cut) for count in counts)

    def _has_more(self, sent: int) -> bool:
        return self.closed or len(self.lines) > sent

    async def stream(self, request: kmock_module.Request) -> AsyncIterator[bytes]:
        self.requests += 1
        stamped = request.params.get("timestamps") == "true"
        since = request.params.get("sinceTime")
        start = _since_ns(since) if since else 0
        limit, cut = self.breaks.pop(0) if self.breaks else (None, False)
        sent = 0
        served = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._has_more, sent))
                pending = self.lines[sent:]
                closed = self.closed
            for stamp, line in pending:
                sent += 1
                if stamp < start:
                    continue
                text = (f"{_rfc3339_nano(stamp)} {line}" if stamped else line) + "\n"
                served += 1
                if served == limit:
                    yield text[: len(text) // 2].encode() if cut else text.encode()
                    return
                yield text.encode()
            if closed and sent == len(self.lines):
                return


def _rfc3339_nano(stamp: int) -> str:
    seconds, nanos = divmod(stamp, 1_000_000_000)
    whole = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"


def _since_ns(text: str) -> int:
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return int(moment.timestamp()) * 1_000_000_000


class Kubelet:
    """Plays the kubelet: moves a pod through its phases by patching its status."""

    def __init__(self, api: CoreV1Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    async def wait_for_pod(self, name: str, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    pod = await self.api.read_namespaced_pod(name, self.namespace)
                except ApiException as error:
                    if error.status != 404:
                        raise
                else:
                    return self.api.api_client.sanitize_for_serialization(pod)
                await asyncio.sleep(0.02)

    async def wait_for_deletion(self, name: str, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.api.read_namespaced_pod(name, self.namespace)
                except ApiException as error:
                    if error.status == 404:
                        return
                    raise
                await asyncio.sleep(0.02)

    async def set_status(self, name: str, status: dict[str, Any]) -> None:
        await self.api.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    async def pending(self, name: str, reason: str = "ContainerCreating") -> None:
        await self.set_status(
            name,
            {
                "phase": "Pending",
                "containerStatuses": [_container({"waiting": {"reason": reason}})],
            },
        )

    async def waiting(self, name: str, reason: str, message: str = "") -> None:
        waiting = {"reason": reason, **({"message": message} if message else {})}
        await self.set_status(
            name, {"phase": "Pending", "containerStatuses": [_container({"waiting": waiting})]}
        )

    async def running(self, name: str, node: str = "node-1") -> None:
        """Bind the pod to ``node`` (the scheduler's part), then report it running."""
        await self.api.patch_namespaced_pod(name, self.namespace, {"spec": {"nodeName": node}})
        await self.set_status(
            name,
            {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "containerStatuses": [
                    _container({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
                ],
            },
        )

    async def terminated(
        self, name: str, exit_code: int, reason: str = "", message: str = ""
    ) -> None:
        terminated: dict[str, Any] = {"exitCode": exit_code}
        if reason:
            terminated["reason"] = reason
        if message:
            terminated["message"] = message
        await self.set_status(
            name,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [_container({"terminated": terminated})],
            },
        )


def _container(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "repo2docker",
        "image": "quay.io/jupyterhub/repo2docker:2025.12.0",
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": state,
    }


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """kmock serves :class:`ClusterEmulator` in these tests."""
    return {"cls": ClusterEmulator}


@pytest.fixture
async def emulator(kmock: ClusterEmulator) -> AsyncIterator[EmulatorProxy]:
    """The emulated Kubernetes API server, behind the failure-injecting proxy."""
    proxy = EmulatorProxy(kmock.url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def core_api(emulator: EmulatorProxy) -> AsyncIterator[CoreV1Api]:
    """A real kubernetes_asyncio client of the emulated API server, for the test's side."""
    configuration = Configuration(host=emulator.url)
    async with ApiClient(configuration) as api_client:
        yield CoreV1Api(api_client)


@pytest.fixture
def kubelet(core_api: CoreV1Api) -> Kubelet:
    return Kubelet(core_api, NAMESPACE)


@pytest.fixture
def pod_logs(kmock: ClusterEmulator) -> Callable[[str], LogSource]:
    """``pod_logs(name)`` serves a pod's log (the emulator has none) from a :class:`LogSource`."""

    def serve(name: str) -> LogSource:
        source = LogSource()
        kmock[f"get /api/v1/namespaces/{NAMESPACE}/pods/{name}/log"] << source.stream
        return source

    return serve


@pytest.fixture
async def executor(emulator: EmulatorProxy) -> AsyncIterator[KubernetesExecutor]:
    """A Kubernetes executor talking to the emulated API server, with quick retries."""
    executor = KubernetesExecutor(
        api_url=emulator.url,
        namespace=NAMESPACE,
        watch_retry_delay=0.01,
        watch_max_retry_delay=0.05,
        watch_give_up_after=0.5,
        log_drain_timeout=2,
    )
    try:
        yield executor
    finally:
        await executor.shutdown()
