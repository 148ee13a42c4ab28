"""Pods in one namespace, as plain JSON, over one shared kubernetes_asyncio client.

:class:`PodApi` is a thin layer over ``CoreV1Api`` that returns the API
server's JSON as dicts (the same form the manifests are built in) and turns
watch and log responses into async iterators. :func:`follow_pod` watches one
pod the reflector way: list to learn its state and resourceVersion, watch from
there, and start over (with exponential backoff on errors) whenever the watch
ends, expires or fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api, V1DeleteOptions, V1Preconditions
from kubernetes_asyncio.client.exceptions import ApiException

GONE = 410
# Answers that retrying does not fix: the service's credentials or its Role.
ACCESS_DENIED = frozenset({401, 403})


class WatchFailed(Exception):
    """Following a pod kept failing for longer than allowed."""


class PodApi:
    """Pods (and build Secrets) in one namespace: create, read, list, delete, watch, logs."""

    def __init__(self, api_client: ApiClient, namespace: str, request_timeout: float) -> None:
        self.api_client = api_client
        self.core = CoreV1Api(api_client)
        self.namespace = namespace
        self.request_timeout = request_timeout

    async def _json(self, response: Any) -> dict[str, Any]:
        try:
            body = await response.read()
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = body
            raise error
        data: dict[str, Any] = json.loads(body)
        return data

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body: Any = manifest  # sent as JSON as it is; the client's models are not needed
        return await self._json(
            await self.core.create_namespaced_pod(
                self.namespace,
                body,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
        )

    async def read(self, name: str) -> dict[str, Any] | None:
        """The pod, or ``None`` when there is none of that name."""
        try:
            return await self._json(
                await self.core.read_namespaced_pod(
                    name,
                    self.namespace,
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def delete(
        self, name: str, grace_period_seconds: int | None = None, uid: str | None = None
    ) -> bool:
        """Delete a pod (within ``grace_period_seconds``, else its own); ``False`` when gone.

        With ``uid``, only that pod: one that replaced it under the same name
        is left alone, and the API server answers 409 (an :class:`ApiException`).
        """
        kwargs: dict[str, Any] = {}
        if grace_period_seconds is not None:
            kwargs["grace_period_seconds"] = grace_period_seconds
        return await self._delete_if_present(
            self.core.delete_namespaced_pod(
                name,
                self.namespace,
                body=_only(uid),
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self.request_timeout,
                **kwargs,
            )
        )

    async def _delete_if_present(self, deletion: Awaitable[Any]) -> bool:
        """Await a delete call; ``False`` when the object was already gone (404)."""
        try:
            await self._json(await deletion)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def create_secret(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Secret (a build's git credential); return it as created."""
        body: Any = manifest
        return await self._json(
            await self.core.create_namespaced_secret(
                self.namespace,
                body,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
        )

    async def patch_secret(self, name: str, patch: dict[str, Any]) -> None:
        """Apply a JSON merge patch to a Secret's metadata (its owner reference)."""
        body: Any = patch
        # The generated signature does not declare _content_type; it takes it.
        options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
        await self._json(
            await self.core.patch_namespaced_secret(
                name,
                self.namespace,
                body,
                _preload_content=False,
                _request_timeout=self.request_timeout,
                **options,
            )
        )

    async def delete_secret(self, name: str, uid: str | None = None) -> bool:
        """Delete a Secret (with ``uid``, only that one, else 409); ``False`` when gone."""
        return await self._delete_if_present(
            self.core.delete_namespaced_secret(
                name,
                self.namespace,
                body=_only(uid),
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
        )

    async def list(self, **selectors: Any) -> dict[str, Any]:
        """A pod list; ``selectors`` are ``label_selector``, ``field_selector``, ``limit``."""
        return await self._json(
            await self.core.list_namespaced_pod(
                self.namespace,
                _preload_content=False,
                _request_timeout=self.request_timeout,
                **selectors,
            )
        )

    async def watch(
        self, field_selector: str, resource_version: str | None, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``type``, ``object``) until the server ends the watch.

        An ``ERROR`` event becomes an :class:`ApiException` with its code
        (410 when the resourceVersion is too old).
        """
        kwargs: dict[str, Any] = {}
        if resource_version:
            kwargs["resource_version"] = resource_version
        response: Any = await self.core.list_namespaced_pod(
            self.namespace,
            watch=True,
            allow_watch_bookmarks=True,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                connect=self.request_timeout, sock_read=timeout_seconds + self.request_timeout
            ),
            **kwargs,
        )
        try:
            if not 200 <= response.status <= 299:
                await self._json(response)
            async for line in _lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                yield event
        finally:
            response.release()

    async def log_lines(
        self, name: str, container: str, since_time: str | None, read_timeout: float | None = None
    ) -> AsyncIterator[str]:
        """A container's log lines, each with its timestamp, following it until the container ends.

        Lines keep their ending ``\n``: a last line without one was cut off
        (or is the log's unterminated end). ``since_time`` (RFC 3339, whole
        seconds) starts the log at the first line of that second. A stream
        silent for ``read_timeout`` seconds raises :class:`TimeoutError`.
        """
        query: list[tuple[str, Any]] = [
            ("container", container),
            ("follow", "true"),
            ("timestamps", "true"),
        ]
        if since_time:
            query.append(("sinceTime", since_time))
        # Called directly: the generated client has no sinceTime parameter.
        response: Any = await self.api_client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            "GET",
            {"namespace": self.namespace, "name": name},
            query,
            {"Accept": "text/plain"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                connect=self.request_timeout, sock_read=read_timeout
            ),
        )
        try:
            if not 200 <= response.status <= 299:
                await self._json(response)
            async for line in _lines(response, keep_ends=True):
                yield line
        finally:
            response.release()


def _only(uid: str | None) -> V1DeleteOptions:
    """Delete options that make a deletion apply only to the object of ``uid`` (if given)."""
    if uid is None:
        return V1DeleteOptions()
    return V1DeleteOptions(preconditions=V1Preconditions(uid=uid))


async def _lines(response: Any, keep_ends: bool = False) -> AsyncIterator[str]:
    """Lines of a streamed response body, of any length, decoded as UTF-8."""
    end = "\n" if keep_ends else ""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace") + end
    if pending:
        yield pending.decode("utf-8", "replace")


@dataclass(frozen=True)
class WatchPolicy:
    """How :func:`follow_pod` watches and retries.

    ``timeout_seconds`` bounds one watch request (the server then ends it and a
    new one starts); after an error the next attempt waits ``retry_delay``,
    doubling up to ``max_retry_delay``; errors in a row for longer than
    ``give_up_after`` seconds raise :class:`WatchFailed`.
    """

    timeout_seconds: int = 300
    retry_delay: float = 0.5
    max_retry_delay: float = 10.0
    give_up_after: float = 60.0


async def follow_pod(
    api: PodApi, name: str, policy: WatchPolicy, log: logging.Logger | logging.LoggerAdapter[Any]
) -> AsyncGenerator[dict[str, Any] | None]:
    """Yield pod ``name`` each time its state may have changed; ``None`` (then stop) once gone.

    The same state can come more than once (after every relist): consumers
    act on changes. Raises :class:`WatchFailed` when the API server keeps
    failing for longer than ``policy.give_up_after``, and an
    :class:`ApiException` at once for 401 and 403 (see ``ACCESS_DENIED``).
    """
    loop = asyncio.get_running_loop()
    field_selector = f"metadata.name={name}"
    failing_since: float | None = None
    attempt = 0
    while True:
        try:
            listing = await api.list(field_selector=field_selector)
            # Filter here too: a selector is a request, the name is the contract.
            pod = next((item for item in listing.get("items") or [] if _name(item) == name), None)
            yield pod
            if pod is None:
                return
            resource_version = (listing.get("metadata") or {}).get("resourceVersion")
            while True:
                async for event in api.watch(
                    field_selector, resource_version, policy.timeout_seconds
                ):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    resource_version = version or resource_version
                    failing_since, attempt = None, 0
                    if _name(obj) != name or event.get("type") == "BOOKMARK":
                        continue
                    if event.get("type") == "DELETED":
                        yield None
                        return
                    yield obj
                failing_since, attempt = None, 0
                log.debug("Watch of pod %s ended, watching again", name)
        except ApiException as error:
            if error.status == GONE:
                log.debug("Watch of pod %s expired, listing again", name)
                continue
            if error.status in ACCESS_DENIED:
                raise
            failing_since = await back_off(loop, failing_since, attempt, error, policy, log)
            attempt += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            failing_since = await back_off(loop, failing_since, attempt, error, policy, log)
            attempt += 1


async def back_off(
    loop: asyncio.AbstractEventLoop,
    failing_since: float | None,
    attempt: int,
    error: Exception,
    policy: WatchPolicy,
    log: logging.Logger | logging.LoggerAdapter[Any],
    action: str = "Watching a build pod",
) -> float:
    """Sleep before the next attempt; raise :class:`WatchFailed` once out of patience.

    Returns when the failures began, to pass back as ``failing_since``.
    """
    now = loop.time()
    since = now if failing_since is None else failing_since
    if now - since > policy.give_up_after:
        raise WatchFailed(
            f"the Kubernetes API server kept failing for {policy.give_up_after:g} s"
            f" ({describe(error)})"
        )
    delay = min(policy.max_retry_delay, policy.retry_delay * 2**attempt)
    delay *= random.uniform(0.5, 1.0)
    log.warning("%s failed (%s), retrying in %.2f s", action, describe(error), delay)
    await asyncio.sleep(delay)
    return since


def describe(error: BaseException) -> str:
    """A one-line description of an API error (without the response body)."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


def _name(obj: dict[str, Any]) -> str | None:
    name: str | None = (obj.get("metadata") or {}).get("name")
    return name
