"""Changing who may use a saved image from the page, in a real headless Chromium.

Three users in their own browser contexts: the test authenticator (see
tests/api/conftest.py) reads each one's name and hub groups from headers the
context sends with every request.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, BrowserContext, expect

from .conftest import Site
from .test_page import finished_lines, same_origin, start_build

pytestmark = pytest.mark.browser


async def user_context(browser: Browser, site: Site, user: str, groups: str = "") -> BrowserContext:
    headers = {"X-Test-User": user}
    if groups:
        headers["X-Test-Groups"] = groups
    context = await browser.new_context(
        viewport={"width": 1100, "height": 900}, extra_http_headers=headers
    )
    context.on("request", site.record)
    return context


async def test_owner_shares_with_a_group_then_with_everyone(browser: Browser, site: Site) -> None:
    alice = await (await user_context(browser, site, "alice")).new_page()
    bob = await (await user_context(browser, site, "bob", "lab")).new_page()
    carol = await (await user_context(browser, site, "carol", "other")).new_page()

    await start_build(alice, site, "shared")
    await finished_lines(alice)
    await alice.fill("#save-name", "lab-env")
    await alice.click("#save-form button[type=submit]")
    mine = alice.locator("#images li[data-image='lab-env']")
    await expect(mine).to_contain_text("yours · private · 0 uses")

    await mine.get_by_label("Visibility").select_option("groups")
    await mine.get_by_label("Hub groups to share lab-env with").fill("lab")
    await mine.get_by_role("button", name="Change visibility").click()
    await expect(mine).to_contain_text("yours · shared with lab")
    await alice.screenshot(path=site.artefacts / "visibility-form.png", full_page=True)
    await alice.reload()
    await expect(alice.locator("#images li[data-image='lab-env']")).to_contain_text(
        "shared with lab"
    )

    await bob.goto(site.url)
    theirs = bob.locator("#images li[data-image='lab-env'][data-owner='alice']")
    await expect(theirs).to_contain_text("shared with you by alice")
    await expect(theirs.get_by_role("button", name="Delete lab-env")).to_have_count(0)
    await expect(theirs.get_by_label("Visibility")).to_have_count(0)
    await carol.goto(site.url)
    await expect(carol.locator("#images")).to_be_attached()
    await expect(carol.locator("#images li[data-image='lab-env']")).to_have_count(0)

    mine = alice.locator("#images li[data-image='lab-env']")
    await mine.get_by_label("Visibility").select_option("public")
    await expect(mine.get_by_label("Hub groups to share lab-env with")).to_be_hidden()
    await mine.get_by_role("button", name="Change visibility").click()
    await expect(mine).to_contain_text("yours · public")
    await carol.reload()
    await expect(carol.locator("#images li[data-image='lab-env']")).to_contain_text(
        "public, by alice"
    )
    await bob.screenshot(path=site.artefacts / "shared-image.png", full_page=True)

    # A refused change is shown, and changes nothing.
    await mine.get_by_label("Visibility").select_option("groups")
    await mine.get_by_label("Hub groups to share lab-env with").fill("")
    await mine.get_by_role("button", name="Change visibility").click()
    await expect(alice.locator("#images-error")).to_contain_text("at least one hub group")
    await expect(mine).to_contain_text("yours · public")
    same_origin(site)
