"""A real service (fake executor, authentication off) and a headless Chromium from Debian.

The service runs in process on the test's event loop; Chromium is Debian's
package, driven by Playwright (which cannot download browsers here).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from binderhub_service.app import BinderHubService
from tests.api.conftest import make_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# An escape sequence as the service relays it (control characters become U+FFFD);
# the page renders it as colour, so it is not part of a line's text on screen.
ESCAPE = re.compile("[\x1b\ufffd]\\[[0-9;]*[A-Za-z]")


@dataclass
class Site:
    """The service's page on a loopback port, and every request the browser made."""

    url: str
    service: BinderHubService
    artefacts: Path
    requests: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.requests.append(request.url)


@asynccontextmanager
async def serve_site(tmp_path: Path, *config_lines: str) -> AsyncIterator[Site]:
    """The service (fake executor, auth off) on a loopback port, with ``config_lines``."""
    service = make_service(
        f"sqlite+aiosqlite:///{tmp_path / 'page.sqlite'}",
        tmp_path,
        "c.FakeExecutor.lines = 400",
        "c.FakeExecutor.pause = 0.05",
        "c.FakeExecutor.pause_every = 20",
        "c.FakeExecutor.extra_line = '\\x1b[1;31mred and bold\\x1b[0m plain'",
        *config_lines,
    )
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(service.tornado_app)
    server.add_sockets([sock])
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    try:
        yield Site(url=f"http://127.0.0.1:{port}/", service=service, artefacts=artefacts)
    finally:
        server.stop()
        await service.build_manager.shutdown()
        await service.stop_store()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with serve_site(tmp_path) as served:
        yield served


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, site: Site) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    page.on("request", site.record)
    yield page
    await context.close()
