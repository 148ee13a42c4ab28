"""Who sees what on the page: users their own builds, admins everyone's (with a user
column) and a cancel button for any unfinished build.

The service takes the configured test authenticator (``HeaderAuthenticator``): each
browser context sends ``X-Test-User`` (and for the admin ``X-Test-Admin: 1``) with
every request, as a hub login would identify it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from playwright.async_api import Browser, Page, expect

from .conftest import Site

pytestmark = pytest.mark.browser

SHA = "c" * 40


@pytest.fixture
async def signed_in(browser: Browser, site: Site) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """A page for one user (or admin), in a browser context of its own."""
    contexts = []

    async def open_as(user: str, admin: bool = False) -> Page:
        headers = {"X-Test-User": user, **({"X-Test-Admin": "1"} if admin else {})}
        context = await browser.new_context(
            viewport={"width": 1100, "height": 900}, extra_http_headers=headers
        )
        contexts.append(context)
        page = await context.new_page()
        page.on("request", site.record)
        await page.goto(site.url)
        await expect(page.locator("#who")).to_have_text(user)
        return page

    yield open_as
    for context in contexts:
        await context.close()


async def build(page: Page, name: str) -> str:
    """Ask for ``name`` from the form; the id of the build the page then shows."""
    before = page.url
    await page.select_option("#provider", "git")
    await page.fill("#repo", f"git://127.0.0.1:9/{name}.git")
    await page.fill("#ref", SHA)
    await page.click("#build-button")
    await page.wait_for_function("before => location.href !== before", arg=before)
    build_id = page.url.split("#build=", 1)[1]
    await expect(page.locator("#build-id")).to_have_text(build_id[:12])
    await expect(page.locator("#build-state")).to_have_text("running", timeout=30_000)
    return build_id


async def history_users(page: Page) -> dict[str, str]:
    """Build id -> the user column's text, for every row of the history table."""
    rows = page.locator("#history tbody tr")
    return {
        await row.get_attribute("data-build") or "": await row.locator(".user-col").inner_text()
        for row in await rows.all()
    }


async def test_users_see_their_own_builds_and_no_cancel_for_others(
    signed_in: Callable[..., Awaitable[Page]], site: Site
) -> None:
    alice = await signed_in("alice")
    alices = await build(alice, "hang-alice")
    await expect(alice.locator("#cancel-button")).to_be_visible()

    bob = await signed_in("bob")
    await expect(bob.locator("#history th.user-col")).to_be_hidden()
    assert alices not in await history_users(bob)
    # Bob asks for the same image: he joins Alice's build and may watch it, not cancel it.
    joined = await build(bob, "hang-alice")
    assert joined == alices
    await expect(bob.locator("#cancel-button")).to_be_hidden()
    await bob.reload()
    await expect(bob.locator("#build-state")).to_have_text("running")
    await expect(bob.locator("#cancel-button")).to_be_hidden()
    await bob.screenshot(path=site.artefacts / "joined-by-another-user.png", full_page=True)

    # A build of Alice's he never asked for stays hidden.
    other = await build(alice, "hang-alice-only")
    await bob.goto(f"{site.url}#build={other}")
    await expect(bob.locator("#build-failure")).to_contain_text("No build")
    await expect(bob.locator("#cancel-button")).to_be_hidden()
    status, record = await site_call(site, "POST", f"builds/{other}/cancel", user="bob")
    assert status == 404, record


async def test_admins_see_everyone_with_a_user_column_and_cancel_any_build(
    signed_in: Callable[..., Awaitable[Page]], site: Site
) -> None:
    alice = await signed_in("alice")
    alices = await build(alice, "hang-for-admin")
    bob = await signed_in("bob")
    bobs = await build(bob, "hang-bob-for-admin")

    admin = await signed_in("root", admin=True)
    await expect(admin.locator("#history th.user-col")).to_be_visible()
    await expect(admin.locator(f"#history tr[data-build='{bobs}']")).to_be_attached()
    users = await history_users(admin)
    assert users[alices] == "alice" and users[bobs] == "bob"
    await admin.screenshot(path=site.artefacts / "admin-history.png", full_page=True)

    await admin.locator(f"#history tr[data-build='{alices}'] a").click()
    cancel = admin.locator("#cancel-button")
    await expect(cancel).to_be_visible()
    await cancel.click()
    await expect(admin.locator("#build-state")).to_have_text("cancelled", timeout=30_000)
    await expect(cancel).to_be_hidden()
    # Alice's own page follows her build to its end, cancelled by someone else.
    await expect(alice.locator("#build-state")).to_have_text("cancelled", timeout=30_000)
    await expect(admin.locator(f"#history tr[data-build='{alices}']")).to_contain_text("cancelled")
    status, record = await site_call(site, "GET", f"builds/{bobs}", user="bob")
    assert status == 200 and record["state"] == "running"


async def site_call(site: Site, method: str, path: str, user: str) -> tuple[int, object]:
    """One API request as ``user``, outside the browser."""
    from tests.api.conftest import Api

    return await Api(url=f"{site.url}api/v1/", service=site.service).call(method, path, user=user)
