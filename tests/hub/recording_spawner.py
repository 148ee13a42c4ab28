"""A spawner for tests: records the image it was given instead of starting a container.

It serves a tiny HTTP endpoint inside the hub's process so the hub sees the
server come up, and writes the image name to ``<record_dir>/<user>.image``.
For the users in ``failing_users`` it fails as a spawner whose container cannot
start would; for those in ``slow_users`` it takes ``slow_start_seconds`` to start.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from jupyterhub.spawner import Spawner
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, List, Unicode


class _Answer(web.RequestHandler):
    def initialize(self, image: str) -> None:
        self.image = image

    def get(self, path: str) -> None:
        self.write({"image": self.image})


class RecordingSpawner(Spawner):
    """Records ``image`` and answers HTTP on a free loopback port."""

    image = Unicode("", help="The image the server would run.").tag(config=True)
    record_dir = Unicode(help="Directory the image names are written to.").tag(config=True)
    failing_users = List(Unicode(), help="Users whose servers fail to start.").tag(config=True)
    slow_users = List(Unicode(), help="Users whose servers start slowly.").tag(config=True)
    slow_start_seconds = Float(3.0, help="How long slow users' servers take to start.").tag(
        config=True
    )

    _http: HTTPServer | None = None

    async def start(self) -> str:
        if self.user.name in self.failing_users:
            raise RuntimeError(f"image {self.image} could not be started")
        if self.user.name in self.slow_users:
            await asyncio.sleep(self.slow_start_seconds)
        Path(self.record_dir, f"{self.user.name}.image").write_text(self.image)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = web.Application([(r"(.*)", _Answer, {"image": self.image})])
        self._http = HTTPServer(app)
        self._http.listen(port, "127.0.0.1")
        return f"http://127.0.0.1:{port}"

    async def poll(self) -> int | None:
        return None if self._http is not None else 0

    async def stop(self, now: bool = False) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
