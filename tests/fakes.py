"""Fake parts for in-process tests: no engine, no registry, no network."""

from __future__ import annotations

import asyncio
from typing import Any

from traitlets import Float, Int, Unicode

from binderhub_service.errors import BuildFailed
from binderhub_service.events import BuildEvent, Phase
from binderhub_service.executors.base import BuildExecutor, BuildRequest, EmitFunc
from binderhub_service.failures import FailureClass


class FakeExecutor(BuildExecutor):
    """Emits ``lines`` building events, a pause of ``pause`` seconds after every
    ``pause_every`` of them, then "pushes".

    A repository URL containing ``fail`` fails with ``failure_message`` (of class
    ``failure_class``); one containing ``flaky`` fails its first ``flaky_failures``
    runs with class ``flaky_class``; one containing ``hang`` never ends until
    cancelled; one containing ``gated`` finishes only once :attr:`gate` is set.
    Built images are remembered, as an engine would.
    """

    name = "fake"
    lines = Int(3).tag(config=True)
    pause = Float(0.0).tag(config=True)
    pause_every = Int(1).tag(config=True)
    failure_message = Unicode("the Dockerfile failed").tag(config=True)
    failure_class = Unicode(FailureClass.BUILD_ERROR.value).tag(config=True)
    flaky_failures = Int(1).tag(config=True)
    flaky_class = Unicode(FailureClass.REGISTRY_UNAVAILABLE.value).tag(config=True)
    extra_line = Unicode("", help="A line emitted after the building lines, if set.").tag(
        config=True
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images: set[str] = set()
        self.runs: list[BuildRequest] = []
        self.cancelled: list[str] = []
        # Set by a test to let builds of ``gated`` repositories finish.
        self.gate = asyncio.Event()

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        self.runs.append(request)
        try:
            emit(BuildEvent(Phase.FETCHING, f"Fetching {request.repo_url}"))
            for i in range(self.lines):
                emit(BuildEvent(Phase.BUILDING, f"line {i}"))
                if self.pause and (i + 1) % self.pause_every == 0:
                    await asyncio.sleep(self.pause)
            if self.extra_line:
                emit(BuildEvent(Phase.BUILDING, self.extra_line))
            if "gated" in request.repo_url:
                await self.gate.wait()
            if "hang" in request.repo_url:
                await asyncio.Event().wait()
            if "fail" in request.repo_url:
                raise BuildFailed(
                    self.failure_message, failure_class=FailureClass(self.failure_class)
                )
            if "flaky" in request.repo_url and len(self.runs) <= self.flaky_failures:
                raise BuildFailed(
                    "the registry went away", failure_class=FailureClass(self.flaky_class)
                )
            emit(BuildEvent(None, "a line without a phase"))
        except asyncio.CancelledError:
            self.cancelled.append(request.build_id)
            raise
        self.images.add(request.image_name)

    async def has_image(self, image_name: str) -> bool:
        return image_name in self.images

    async def health(self) -> dict[str, Any]:
        return {"fake": True}

    def builder_version(self) -> str:
        return "0.0-fake"
