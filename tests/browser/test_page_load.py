"""The page under load: a queued build's position, and a long log (fake executor, auth off)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from .conftest import serve_site
from .test_page import api_lines, build_id, finished_lines, start_build

pytestmark = pytest.mark.browser


async def test_queue_position_is_shown(browser: Browser, tmp_path: Path) -> None:
    async with serve_site(
        tmp_path, "c.BuildManager.max_concurrent_builds = 1", "c.FakeExecutor.lines = 1"
    ) as site:
        context = await browser.new_context()
        try:
            first = await context.new_page()
            await start_build(first, site, "hang")
            await expect(first.locator("#build-state")).to_have_text("running")
            second = await context.new_page()
            await start_build(second, site, "queued")
            await expect(second.locator("#build-queue")).to_have_text("1")
            await expect(second.locator("#build-phase")).to_have_text("waiting")
            await first.click("#cancel-button")
            await expect(second.locator("#build-state")).to_have_text("succeeded")
            await expect(second.locator("#build-queue")).to_have_text("\u2013")
        finally:
            await context.close()


async def test_a_long_log_arrives_whole(browser: Browser, tmp_path: Path) -> None:
    """20,000 lines arrive in one burst; the page shows every one, in order."""
    async with serve_site(
        tmp_path, "c.FakeExecutor.lines = 20000", "c.FakeExecutor.pause = 0"
    ) as site:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            started = time.monotonic()
            await start_build(page, site, "long")
            lines = await finished_lines(page)
            elapsed = time.monotonic() - started
            assert lines == await api_lines(site, build_id(page))
            assert len(lines) > 20000
            print(f"20,000-line log shown in {elapsed:.1f} s")
        finally:
            await context.close()
