"""The web page through a real JupyterHub: hub login, then a real build from the form."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, ESCAPE
from tests.conftest import GitServer
from tests.repos import hello_repo
from tests.sse import read_events

from .conftest import Hub

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.browser]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def test_log_in_through_the_hub_and_build(
    hub: Hub, git_server: GitServer, base_image: str, browser: Browser
) -> None:
    url, sha = git_server.make_repo("hub-page", hello_repo(base_image, "built from the page"))
    context = await browser.new_context()
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        await page.goto(hub.service_url)
        assert page.url.startswith(hub.url + "hub/login"), "sent to the hub's login form"
        await page.fill("input[name=username]", "alice")
        await page.fill("input[name=password]", "x")
        await page.click("#login_submit, input[type=submit], button[type=submit]")
        await expect(page.locator("#who")).to_have_text("alice", timeout=30_000)
        assert page.url.startswith(hub.service_url)

        # The build's POST is cookie-authenticated: it only passes with the XSRF token.
        await page.select_option("#provider", "git")
        await page.fill("#repo", url)
        await page.fill("#ref", sha)
        await page.click("#build-button")
        log = page.locator("#log")
        await expect(log).to_have_attribute("data-done", "1", timeout=300_000)
        await expect(page.locator("#build-state")).to_have_text("succeeded")
        lines = await log.locator(".log-line").all_text_contents()
        build = page.url.split("#build=", 1)[1]
    finally:
        await context.close()
    stream = await read_events(
        f"{hub.service_url}api/v1/builds/{build}/events", headers=hub.auth("alice")
    )
    assert lines == [ESCAPE.sub("", m.removesuffix("\n")) for m in stream.messages]
    assert "built from the page" in "\n".join(lines)
    assert [u for u in requests if not u.startswith(hub.url)] == []
