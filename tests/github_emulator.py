"""Loopback stand-ins for GitHub: its commits API and smart-HTTP git with credentials.

Both serve the bare repositories of a :class:`tests.conftest.GitServer`, so a
test can push a commit and have it resolved and cloned as if from GitHub.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port


@dataclass
class GitHubEmulator:
    """What the emulated GitHub saw, and where it listens."""

    repos: Path
    token: str | None = None
    api_requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return header in (f"token {self.token}", f"Basic {basic}")


class CommitsHandler(web.RequestHandler):
    """``GET /api/repos/{owner}/{repo}/commits/{ref}``: ``{"sha": ...}`` with an ETag."""

    def initialize(self, github: GitHubEmulator) -> None:
        self.github = github

    def get(self, owner: str, repo: str, ref: str) -> None:
        self.github.api_requests.append(self.request.path)
        if not self.github.authorized(self.request.headers.get("Authorization")):
            raise web.HTTPError(404)
        result = subprocess.run(
            ["git", "-C", str(self.github.repos / owner / f"{repo}.git"), "rev-parse", ref],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise web.HTTPError(422)
        sha = result.stdout.strip()
        self.set_header("ETag", f'"{sha}"')
        self.write({"sha": sha})


class GitHttpHandler(web.RequestHandler):
    """Smart HTTP git: a CGI bridge to ``git http-backend``, behind basic auth."""

    def initialize(self, github: GitHubEmulator) -> None:
        self.github = github

    async def get(self, path: str) -> None:
        await self._backend(path)

    async def post(self, path: str) -> None:
        await self._backend(path)

    async def _backend(self, path: str) -> None:
        authorization = self.request.headers.get("Authorization")
        if authorization:
            self.github.authorizations.append(authorization)
        if not self.github.authorized(authorization):
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Basic realm="git"')
            return
        env = {
            "GIT_PROJECT_ROOT": str(self.github.repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + path,
            "QUERY_STRING": self.request.query,
            "REQUEST_METHOD": self.request.method or "GET",
            "CONTENT_TYPE": self.request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(self.request.body)),
            "HTTP_CONTENT_ENCODING": self.request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.request.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": "127.0.0.1",
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await proc.communicate(self.request.body)
        head, _, body = out.partition(b"\r\n\r\n")
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                self.set_status(int(value.split()[0]))
            else:
                self.set_header(name.strip(), value.strip())
        self.write(body)


def start_github(repos: Path, token: str | None = None) -> tuple[HTTPServer, GitHubEmulator]:
    """Serve the API under ``/api/`` and git under ``/`` on one loopback port."""
    github = GitHubEmulator(repos=repos, token=token)
    sock, github.port = bind_unused_port()
    app = web.Application(
        [
            (r"/api/repos/([^/]+)/([^/]+)/commits/(.+)", CommitsHandler, {"github": github}),
            (r"/(.+)", GitHttpHandler, {"github": github}),
        ]
    )
    server = HTTPServer(app)
    server.add_sockets([sock])
    return server, github
