"""Where built images live: a registry (OCI distribution API) or the local engine."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from traitlets import Float, List, Unicode, default
from traitlets.config import LoggingConfigurable

from .docker_config import credentials_for
from .errors import UpstreamError
from .naming import split_image_name

MANIFEST_MEDIA_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def parse_www_authenticate(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="...",service="..."`` into its scheme and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    while rest:
        key, _, rest = rest.strip().partition("=")
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        params[key.strip().lower()] = value
        rest = rest.lstrip(", ")
    return scheme.lower(), params


class DockerRegistry(LoggingConfigurable):
    """A client for the image registry builds are pushed to (OCI distribution API v2).

    It only asks whether an image exists; anonymous, basic and bearer-token
    (``WWW-Authenticate``) authentication are supported.
    """

    url = Unicode(
        "",
        help="""Base URL of the registry's API, e.g. ``https://registry.example.org`` or
        ``http://127.0.0.1:5000``. Empty (the default) means no registry: images stay
        in the local container engine.""",
    ).tag(config=True)

    docker_config_path = Unicode(
        help="""Path of a docker ``config.json`` holding credentials for the registry.

        Default: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``; a missing
        file means anonymous access. repo2docker pushes with the same file.""",
    ).tag(config=True)

    @default("docker_config_path")
    def _default_docker_config_path(self) -> str:
        docker_config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        return os.path.join(docker_config, "config.json")

    timeout = Float(10.0, help="Seconds to wait for the registry to answer. Default 10.").tag(
        config=True
    )

    token_realm_hosts = List(
        Unicode(),
        help="""Hosts other than the registry's whose token service may receive its credentials.

        A registry answering 401 names, in ``WWW-Authenticate``, a token service
        (the bearer realm) to ask; the registry's user name and password are sent
        there only when the realm's host is the registry's own host or one of
        these, and never over http when the registry is reached over https.
        Default: none. Example: ``["auth.docker.io"]`` for Docker Hub.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    def _credentials(self) -> tuple[str, str] | None:
        try:
            with open(self.docker_config_path) as f:
                config = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.log.warning("Cannot read docker config %s: %s", self.docker_config_path, e)
            return None
        return credentials_for(config, self.host)

    async def _fetch(self, request: HTTPRequest) -> HTTPResponse:
        try:
            return await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as e:
            raise UpstreamError(
                f"The image registry at {self.url} cannot be reached; try again later."
            ) from e

    async def _authorization(self, challenge: str, scope: str) -> str | None:
        scheme, params = parse_www_authenticate(challenge)
        credentials = self._credentials()
        basic = None
        if credentials:
            basic = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        if scheme == "basic":
            return basic
        if scheme != "bearer" or "realm" not in params:
            return None
        scope = params.get("scope", scope)
        cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        query = {"service": params.get("service", ""), "scope": scope}
        realm = params["realm"]
        if not realm.lower().startswith(("http://", "https://")):
            self.log.warning("The registry names a token service that is not an http(s) URL")
            return None
        if not self._may_send_credentials(realm):
            if basic:
                self.log.warning("Not sending registry credentials to the token service it names")
            basic = None
        token_url = realm + "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": basic} if basic else {}
        response = await self._fetch(
            HTTPRequest(token_url, headers=headers, request_timeout=self.timeout)
        )
        if response.code != 200:
            raise UpstreamError("The image registry refused the configured credentials.", 502)
        body = json.loads(response.body)
        token = body.get("token") or body.get("access_token")
        if not token:
            return None
        lifetime = float(body.get("expires_in", 60))
        value = f"Bearer {token}"
        self._tokens[scope] = (value, time.monotonic() + max(lifetime - 10, 1))
        return value

    def _may_send_credentials(self, realm: str) -> bool:
        """Whether the bearer ``realm`` is a token service the credentials may go to."""
        try:
            there = urllib.parse.urlsplit(realm)
            here = urllib.parse.urlsplit(self.url)
            hosts = {here.hostname, *(h.lower() for h in self.token_realm_hosts)}
        except ValueError:
            return False
        if there.scheme not in ("http", "https") or not there.hostname:
            return False
        if here.scheme == "https" and there.scheme != "https":
            return False
        return there.hostname in hosts

    async def _get(self, path: str, scope: str, method: str = "GET") -> HTTPResponse:
        url = self.url.rstrip("/") + path
        headers = {"Accept": MANIFEST_MEDIA_TYPES}
        cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            headers["Authorization"] = cached[0]
        request = HTTPRequest(url, method=method, headers=headers, request_timeout=self.timeout)
        response = await self._fetch(request)
        if response.code == 401 and "WWW-Authenticate" in response.headers:
            authorization = await self._authorization(response.headers["WWW-Authenticate"], scope)
            if authorization:
                headers["Authorization"] = authorization
                response = await self._fetch(
                    HTTPRequest(url, method=method, headers=headers, request_timeout=self.timeout)
                )
        return response

    async def has_image(self, image_name: str) -> bool:
        """Whether the registry holds a manifest for ``image_name`` (``name:tag`` or
        ``name@digest``)."""
        name, _, digest = image_name.partition("@")
        _, repository, tag = split_image_name(name)
        if digest:
            tag = digest
        path = f"/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        response = await self._get(path, f"repository:{repository}:pull", method="HEAD")
        if response.code == 200:
            return True
        if response.code == 404:
            return False
        self.log.warning("Registry answered %s for %s", response.code, path)
        raise UpstreamError(
            f"The image registry answered {response.code} when asked for an image; "
            "try again later or ask the operator to check the registry credentials."
        )

    async def health(self) -> dict[str, Any]:
        response = await self._get("/v2/", "registry:catalog:*")
        if response.code != 200:
            raise UpstreamError(f"The registry answered {response.code} on /v2/.")
        return {"url": self.url}

    async def repositories(self, prefix: str = "") -> list[str]:
        """Repository names in the registry's catalog that start with ``prefix``."""
        names: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            response = await self._get(path, "registry:catalog:*")
            if response.code != 200:
                raise UpstreamError(f"The registry answered {response.code} on its catalog.")
            names += [n for n in json.loads(response.body).get("repositories") or [] if n]
            path = _next_page(response.headers.get("Link", ""))
        return [n for n in names if n.startswith(prefix)]

    async def tags(self, repository: str) -> list[str]:
        """Tags of ``repository`` (none when it does not exist)."""
        response = await self._get(f"/v2/{repository}/tags/list", f"repository:{repository}:pull")
        if response.code == 404:
            return []
        if response.code != 200:
            raise UpstreamError(f"The registry answered {response.code} listing tags.")
        return list(json.loads(response.body).get("tags") or [])

    async def manifest(self, repository: str, tag: str) -> tuple[str, dict[str, Any]] | None:
        """The digest and document of a tag's manifest, or None when it is gone."""
        path = f"/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        response = await self._get(path, f"repository:{repository}:pull")
        if response.code == 404:
            return None
        if response.code != 200:
            raise UpstreamError(f"The registry answered {response.code} for a manifest.")
        return response.headers.get("Docker-Content-Digest", ""), json.loads(response.body)

    async def blob_json(self, repository: str, digest: str) -> dict[str, Any]:
        """A small JSON blob (an image's config), or {} when it cannot be read."""
        response = await self._get(
            f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull"
        )
        if response.code != 200:
            return {}
        try:
            value = json.loads(response.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    async def delete_manifest(self, repository: str, digest: str) -> int:
        """Ask the registry to delete a manifest by digest; return its status code.

        202 (deleted) and 404 (already gone) are done; 405 means the registry
        does not delete (distribution's ``storage.delete.enabled`` is off).
        """
        path = f"/v2/{repository}/manifests/{digest}"
        response = await self._get(path, f"repository:{repository}:delete", method="DELETE")
        return response.code


def _next_page(link: str) -> str | None:
    """The path of the next page named in a ``Link: </v2/...>; rel="next"`` header."""
    if 'rel="next"' not in link:
        return None
    target = link.partition("<")[2].partition(">")[0]
    return target if target.startswith("/v2/") else None
