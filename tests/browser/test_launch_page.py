"""The launch page in headless Chromium, against a service without a hub (fake executor).

Without a hub nobody may launch: the page shows the stream's refusal. Paths
that would leave the server are refused by the page itself, before any stream.
"""

from __future__ import annotations

import urllib.parse

import pytest
from playwright.async_api import Page, expect

from .conftest import Site

pytestmark = pytest.mark.browser

SPEC = "git/" + urllib.parse.quote("git://127.0.0.1:9/repo.git", safe="") + "/" + "d" * 40


async def test_the_page_follows_the_build_and_shows_a_refusal(page: Page, site: Site) -> None:
    response = await page.goto(f"{site.url}v2/{SPEC}?labpath=notebooks/x.ipynb")
    assert response is not None and response.status == 200
    headers = await response.all_headers()
    assert headers["content-security-policy"].startswith("default-src 'self'")
    await expect(page.locator("body")).to_have_attribute("data-path", "doc/tree/notebooks/x.ipynb")
    await expect(page.locator("#phase")).to_have_text("failed", timeout=30_000)
    await expect(page.locator("#error")).to_contain_text("logged-in hub user")
    assert site.service.executor.runs == []  # type: ignore[attr-defined]
    link = await page.locator("#share-link").input_value()
    assert link == f"{site.url}v2/{SPEC}?labpath=notebooks/x.ipynb"
    badge = await page.locator("#share-badge").input_value()
    assert badge == f"[![Launch]({site.url}static/launch-badge.svg)]({link})"
    assert all(url.startswith(site.url) for url in site.requests)


@pytest.mark.parametrize(
    "query",
    ["urlpath=https://evil.example/", "urlpath=//evil.example/", "urlpath=/\\evil.example"],
)
async def test_paths_off_the_server_are_refused(page: Page, site: Site, query: str) -> None:
    response = await page.goto(f"{site.url}v2/{SPEC}?{query}")
    assert response is not None and response.status == 400
    await expect(page.locator("#error")).to_contain_text("is not allowed")
    await expect(page.locator("#log")).to_have_attribute("data-done", "1")
    assert not any("/build/" in url for url in site.requests)
