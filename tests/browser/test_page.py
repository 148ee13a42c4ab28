"""The web page in a real headless Chromium against a real service (fake executor, auth off)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.sse import read_events

from .conftest import ESCAPE, Site

pytestmark = pytest.mark.browser

SHA = "c" * 40


async def start_build(page: Page, site: Site, name: str) -> None:
    await page.goto(site.url)
    await page.select_option("#provider", "git")
    await page.fill("#repo", f"git://127.0.0.1:9/{name}.git")
    await page.fill("#ref", SHA)
    await page.click("#build-button")
    await expect(page.locator("#build-view")).to_be_visible()


async def finished_lines(page: Page) -> list[str]:
    await expect(page.locator("#log")).to_have_attribute("data-done", "1", timeout=60_000)
    lines: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#log .log-line')].map(e => e.textContent)"
    )
    return lines


def build_id(page: Page) -> str:
    return page.url.split("#build=", 1)[1]


async def api_lines(site: Site, build: str) -> list[str]:
    """The build's log from the API, as the page shows it (colour codes rendered, not shown)."""
    stream = await read_events(f"{site.url}api/v1/builds/{build}/events")
    return [ESCAPE.sub("", m.removesuffix("\n")) for m in stream.messages]


def same_origin(site: Site) -> None:
    assert site.requests, "the browser made no requests"
    elsewhere = [url for url in site.requests if not url.startswith(site.url)]
    assert elsewhere == []


async def test_page_headers(page: Page, site: Site) -> None:
    response = await page.goto(site.url)
    assert response is not None and response.status == 200
    headers = await response.all_headers()
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-content-type-options"] == "nosniff"
    assert "text/html" in headers["content-type"]
    await expect(page.locator("#provider option[value=git]")).to_be_attached()
    loaded = await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"page loaded in {loaded:.0f} ms")
    assert loaded < 1000


async def test_build_from_form_shows_every_line(page: Page, site: Site) -> None:
    await start_build(page, site, "repo")
    lines = await finished_lines(page)
    build = build_id(page)
    assert lines == await api_lines(site, build)
    assert len(lines) > 400
    await expect(page.locator("#build-state")).to_have_text("succeeded")
    await expect(page.locator("#build-phase")).to_have_text("ready")
    image = site.service.executor.runs[0].image_name  # type: ignore[attr-defined]
    await expect(page.locator("#build-image")).to_have_text(image)
    coloured = page.locator("#log span.ansi-31.ansi-bold")
    await expect(coloured).to_have_text("red and bold")
    await page.screenshot(path=site.artefacts / "build.png", full_page=True)
    same_origin(site)


async def test_reload_mid_build_loses_and_repeats_nothing(page: Page, site: Site) -> None:
    await start_build(page, site, "reload")
    await expect(page.locator("#log .log-line").nth(59)).to_be_attached()
    await page.reload()
    lines = await finished_lines(page)
    assert lines == await api_lines(site, build_id(page))
    assert len(set(lines)) == len(lines)
    same_origin(site)


async def test_resume_sends_last_event_id(page: Page, site: Site) -> None:
    resumed: list[str | None] = []

    async def note(request: object) -> None:
        if request.url.endswith("/events"):  # type: ignore[attr-defined]
            resumed.append(await request.header_value("last-event-id"))  # type: ignore[attr-defined]

    page.on("request", note)
    await start_build(page, site, "resume")
    await expect(page.locator("#log .log-line").nth(59)).to_be_attached()
    await page.reload()
    await finished_lines(page)
    assert resumed[0] == "0"
    assert int(resumed[-1] or 0) >= 50


async def test_failed_build_and_history(page: Page, site: Site) -> None:
    await start_build(page, site, "fail")
    lines = await finished_lines(page)
    failed = build_id(page)
    assert lines == await api_lines(site, failed)
    await expect(page.locator("#build-failure")).to_contain_text(
        "the Dockerfile failed (build error)"
    )
    await expect(page.locator("#cancel-button")).to_be_hidden()
    row = page.locator(f"#history tr[data-build='{failed}']")
    await expect(row).to_contain_text("failed")
    await expect(row.locator(".reason")).to_contain_text("the Dockerfile failed (build error)")

    # A finished build's stored log replays from the history.
    await start_build(page, site, "other")
    await finished_lines(page)
    await page.goto(site.url)
    await row.locator("a").click()
    assert await finished_lines(page) == lines
    await page.screenshot(path=site.artefacts / "history.png", full_page=True)
    same_origin(site)


async def test_cancel_offered_to_the_requester(page: Page, site: Site) -> None:
    await start_build(page, site, "hang")
    cancel = page.locator("#cancel-button")
    await expect(cancel).to_be_visible()
    await cancel.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#build-state")).to_have_text("cancelled", timeout=30_000)
    await expect(cancel).to_be_hidden()


async def test_save_copy_and_delete_an_image(page: Page, site: Site) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await start_build(page, site, "saved")
    await finished_lines(page)
    await page.fill("#save-name", "my-env")
    await page.fill("#save-description", "An environment")
    await page.click("#save-form button[type=submit]")
    item = page.locator("#images li[data-image='my-env']")
    await expect(item).to_contain_text("An environment")
    await item.get_by_role("button", name="Copy Markdown badge").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    # The badge is the saved image's launch link.
    badge_url = f"{site.url}static/launch-badge.svg"
    assert copied == f"[![my-env]({badge_url})]({site.url}v2/saved/anonymous/my-env)"
    badge = await page.request.get(badge_url)
    assert badge.ok and "svg" in badge.headers["content-type"]
    # The link copied is the launch route's page for this saved image.
    launch = await page.request.get(f"{site.url}v2/saved/anonymous/my-env")
    assert launch.ok and "static/launch.js" in await launch.text()
    await item.get_by_role("button", name="Delete my-env").click()
    await expect(item).to_have_count(0)
    same_origin(site)


async def test_readable_on_a_phone(page: Page, site: Site) -> None:
    await page.set_viewport_size({"width": 375, "height": 800})
    await start_build(page, site, "phone")
    await finished_lines(page)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    await page.screenshot(path=site.artefacts / "phone.png", full_page=False)


async def test_build_form_is_keyboard_usable(page: Page, site: Site) -> None:
    await page.goto(site.url)
    await page.select_option("#provider", "git")
    await page.focus("#provider")
    await page.keyboard.press("Tab")
    await page.keyboard.type("git://127.0.0.1:9/keys.git")
    await page.keyboard.press("Tab")
    await page.keyboard.type(SHA)
    await page.keyboard.press("Enter")
    lines = await finished_lines(page)
    assert "Fetching git://127.0.0.1:9/keys.git" in lines


AXE = Path(__file__).resolve().parent.parent / "js" / "node_modules" / "axe-core" / "axe.min.js"


async def test_no_critical_accessibility_issue(browser: Browser, site: Site) -> None:
    """axe-core (tests/js, installed by .ci/install-node-deps) checks the page after a build.

    Its script is injected into the page, which the page's own policy forbids: this
    one context bypasses the Content-Security-Policy for that.
    """
    assert AXE.is_file(), f"{AXE} is missing: run .ci/install-node-deps"
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    try:
        await start_build(page, site, "axe")
        await finished_lines(page)
        await page.fill("#save-name", "axe-env")
        await page.click("#save-form button[type=submit]")
        await expect(page.locator("#images li[data-image='axe-env']")).to_be_visible()
        await page.add_script_tag(path=AXE)
        violations = await page.evaluate(
            "axe.run(document).then(r => r.violations.map(v => [v.id, v.impact, v.help]))"
        )
    finally:
        await context.close()
    critical = [v for v in violations if v[1] == "critical"]
    assert critical == [], violations
