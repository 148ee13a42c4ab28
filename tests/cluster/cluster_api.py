"""The emulated Kubernetes API server as a pod sees it: TLS on loopback, a service-account token.

kmock's Kubernetes emulator speaks plain HTTP to whoever calls it. A pod's
in-cluster configuration wants an HTTPS server whose certificate its
``ca.crt`` trusts, and sends the token of its service account. This front
server, for tests only, gives the emulator both: a self-signed certificate for
127.0.0.1, and a token it checks on every request (401 without it), so a test
can tell that the pod used the files the runner mounted. Like the executor
tests' proxy it lowercases ``watch=True`` (the emulator only knows
``watch=true``) and gives created objects a ``metadata.uid``.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yarl
from aiohttp import web
from multidict import MultiDict


@dataclass
class Request:
    """One request the API server answered: method, path and whether it carried the token."""

    method: str
    path: str
    authorized: bool


@dataclass
class ApiServer:
    """A TLS front of the emulator on 127.0.0.1 (``host``, ``port``, ``ca_cert``, ``token``)."""

    upstream: yarl.URL
    cert_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    requests: list[Request] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _runner: web.AppRunner | None = None

    @property
    def ca_cert(self) -> Path:
        return self.cert_dir / "ca.crt"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _make_certificate(self) -> ssl.SSLContext:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key = self.cert_dir / "tls.key"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=kubernetes",
                "-addext",
                f"subjectAltName=IP:{self.host}",
                "-keyout",
                str(key),
                "-out",
                str(self.ca_cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_cert, key)
        return context

    async def start(self) -> None:
        context = self._make_certificate()
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        """The pods in ``namespace``, asked the way a client in the cluster asks."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.url}/api/v1/namespaces/{namespace}/pods", headers=headers, ssl=context
            ) as response,
        ):
            response.raise_for_status()
            items: list[dict[str, Any]] = (await response.json()).get("items") or []
            return items

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        self.requests.append(Request(request.method, request.path, authorized))
        if not authorized:
            return web.json_response(
                {"kind": "Status", "status": "Failure", "code": 401, "reason": "Unauthorized"},
                status=401,
            )
        query = MultiDict(request.query)
        if query.get("watch", "").lower() == "true":
            query["watch"] = "true"
        url = self.upstream.with_path(request.path).with_query(query)
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() in ("content-type", "accept")
        }
        body = await request.read()
        if request.method == "POST" and body:
            created = json.loads(body)
            created.setdefault("metadata", {}).setdefault("uid", str(uuid.uuid4()))
            body = json.dumps(created).encode()
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


def emulate_core_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Let the emulator hold pods and Secrets, the resources the service works with."""
    emulator.resources["v1/pods"] = kmock.ResourceInfo(namespaced=True, kind="Pod")
    emulator.resources["v1/secrets"] = kmock.ResourceInfo(namespaced=True, kind="Secret")
