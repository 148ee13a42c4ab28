"""Launch links through a real JupyterHub: real builds, real spawns, a real browser.

The hub's spawner is the test's RecordingSpawner: a tiny single-user server in
the hub's process that records the image it was given (the hub applies the
launch's ``{"image": ...}`` options to it as DockerSpawner would). The service
``binder`` starts default servers, ``binder-named`` a named server per
repository; each user may have one named server. ``erin``'s servers fail to
start, ``frank``'s take seconds. The hub answers every start at once (202) and
the service follows the hub's progress, as with spawners that take time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from binderhub_service.launch_paths import server_name
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import GitServer, Registry, stop_process
from tests.repos import chatty_repo, failing_repo, hello_repo
from tests.sse import EventStream, read_events

from .conftest import REPO_ROOT, SERVICE, USERS, Hub, service_config, start_hub

pytestmark = [pytest.mark.hub, pytest.mark.docker]

NAMED = "binder-named"
FAILING_USER = "erin"
SLOW_USER = "frank"
HUB_EXTRA = f"""
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.RecordingSpawner.apply_user_options = {{"image": "image"}}
c.RecordingSpawner.failing_users = [{FAILING_USER!r}]
c.RecordingSpawner.slow_users = [{SLOW_USER!r}]
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 1
"""


@pytest.fixture(scope="module")
def launch_hub(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Registry,
    git_server: GitServer,
    r2d_config: str,
    base_image: str,
) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("launch-hub")
    docker = 'c.Launcher.spawner_options = "dockerspawner"\n'
    configs = {
        SERVICE: service_config(registry, r2d_config, root / "data") + docker,
        NAMED: service_config(registry, r2d_config, root / "named-data")
        + docker
        + "c.Launcher.named_servers = True\n"
        + "c.BinderHubService.keepalive_interval = 0.5\n",
    }
    users = {**USERS, FAILING_USER: "builder", SLOW_USER: "builder"}
    hub = start_hub(root, users, configs, HUB_EXTRA)
    yield hub
    stop_process(hub.proc, timeout=20)


def spec_of(repo_url: str, ref: str) -> str:
    return "git/" + urllib.parse.quote(repo_url, safe="") + "/" + ref


def stop_servers(hub: Hub, user: str) -> None:
    """Stop and remove every server of ``user``; wait until the hub has none running."""
    model = hub.api("GET", f"users/{user}")
    assert isinstance(model, dict)
    for name in model.get("servers") or {}:
        path = f"users/{user}/servers/{name}?remove=true" if name else f"users/{user}/server"
        try:
            hub.api("DELETE", path)
        except urllib.error.HTTPError as e:
            assert e.code in (400, 404), e
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = hub.api("GET", f"users/{user}")
        assert isinstance(model, dict)
        if not model.get("servers"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{user}'s servers did not stop")


def recorded_image(hub: Hub, user: str) -> str:
    return (hub.root / f"{user}.image").read_text()


def builds_of(hub: Hub, user: str, ref: str) -> list[dict]:
    request = urllib.request.Request(f"{hub.service_url}api/v1/builds", headers=hub.auth(user))
    with urllib.request.urlopen(request, timeout=30) as r:
        builds = json.load(r)["builds"]
    return [b for b in builds if b["ref"] == ref]


async def launch(
    hub: Hub, user: str, spec: str, service: str = SERVICE, query: str = "", token: str = ""
) -> EventStream:
    url = f"{hub.url_of(service)}build/{spec}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"token {token}"} if token else hub.auth(user)
    return await read_events(url, headers=headers)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def log_in(page: Page, hub: Hub, user: str) -> None:
    assert page.url.startswith(hub.url + "hub/login"), page.url
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", "x")
    await page.click("#login_submit, input[type=submit], button[type=submit]")


@pytest.mark.browser
async def test_a_logged_out_browser_lands_in_the_server_it_asked_for(
    launch_hub: Hub, git_server: GitServer, base_image: str, browser: Browser
) -> None:
    hub = launch_hub
    stop_servers(hub, "alice")
    url, sha = git_server.make_repo("launch-page", chatty_repo(base_image, 300, batch=20))
    link = f"{hub.service_url}v2/{spec_of(url, sha)}?urlpath=lab/tree/x.ipynb"
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(link)
        await log_in(page, hub, "alice")
        # The login kept the query: the launch page follows the build's log.
        await expect(page.locator("#log .log-line").first).to_be_attached(timeout=120_000)
        await page.wait_for_url(hub.url + "user/alice/lab/tree/x.ipynb", timeout=300_000)
        served = json.loads(await page.locator("body").inner_text())
    finally:
        await context.close()
    [build] = builds_of(hub, "alice", sha)
    assert build["state"] == "succeeded"
    assert served == {"image": build["image_name"]}
    assert recorded_image(hub, "alice") == build["image_name"]


@pytest.mark.browser
async def test_two_browsers_on_one_link_share_one_build(
    launch_hub: Hub, git_server: GitServer, base_image: str, browser: Browser
) -> None:
    hub = launch_hub
    url, sha = git_server.make_repo("launch-crowd", chatty_repo(base_image, 600, batch=20))
    link = f"{hub.service_url}v2/{spec_of(url, sha)}?labpath=x.ipynb"
    pages = []
    for user in ("alice", "bob"):
        stop_servers(hub, user)
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(hub.service_url)
        await log_in(page, hub, user)
        await expect(page.locator("#who")).to_have_text(user, timeout=30_000)
        pages.append((user, page))
    try:
        await asyncio.gather(*(page.goto(link) for _, page in pages))
        for user, page in pages:
            await page.wait_for_url(hub.url + f"user/{user}/doc/tree/x.ipynb", timeout=300_000)
    finally:
        for _, page in pages:
            await page.context.close()
    [alice_build] = builds_of(hub, "alice", sha)
    [bob_build] = builds_of(hub, "bob", sha)
    assert alice_build["id"] == bob_build["id"], "one repo2docker run for both"
    assert recorded_image(hub, "alice") == recorded_image(hub, "bob") == alice_build["image_name"]


@pytest.mark.browser
async def test_the_page_offers_a_running_server_or_a_restart_with_this_image(
    launch_hub: Hub, git_server: GitServer, base_image: str, browser: Browser
) -> None:
    hub = launch_hub
    stop_servers(hub, "alice")
    hub.api("POST", "users/alice/server", {"image": "other:2"})
    url, sha = git_server.make_repo("launch-choice", hello_repo(base_image, "choice"))
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{hub.service_url}v2/{spec_of(url, sha)}?filepath=x.ipynb")
        await log_in(page, hub, "alice")
        await expect(page.locator("#running")).to_be_visible(timeout=300_000)
        await expect(page.locator("#error")).to_contain_text("already running")
        opened = await page.locator("#open-running").get_attribute("href")
        assert opened == hub.url + "user/alice/tree/x.ipynb"
        assert recorded_image(hub, "alice") == "other:2", "the running server was left alone"
        await page.click("#replace-button")
        await page.wait_for_url(hub.url + "user/alice/tree/x.ipynb", timeout=300_000)
    finally:
        await context.close()
    [build] = builds_of(hub, "alice", sha)
    assert recorded_image(hub, "alice") == build["image_name"]


@pytest.mark.node
def test_binderhub_client_in_launch_mode_gets_ready_with_url(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, "bob")
    url, sha = git_server.make_repo("launch-js", hello_repo(base_image, "launched from node"))
    result = subprocess.run(
        [
            "node",
            "build.mjs",
            hub.service_url + "build/",
            spec_of(url, sha),
            hub.tokens["bob"],
            "launch",
            "urlpath=lab/tree/x.ipynb",
        ],
        cwd=REPO_ROOT / "tests" / "js",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    *events, redirect = [json.loads(line) for line in result.stdout.splitlines()]
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    assert "launching" in [e.get("phase") for e in events]
    assert ready["url"] == hub.url + "user/bob/"
    assert ready["image"] == recorded_image(hub, "bob")
    assert ready["repo_url"] == url
    assert ready["binder_launch_host"] == hub.service_url
    assert redirect["redirect"].startswith(hub.url + "user/bob/lab/tree/x.ipynb?token=")


async def test_a_found_image_launches_without_a_build_and_a_reload_resumes(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, "alice")
    url, sha = git_server.make_repo("launch-again", hello_repo(base_image, "again"))
    first = await launch(hub, "alice", spec_of(url, sha))
    assert first.phases[-1] == "ready", first.messages[-3:]
    assert first.ids == sorted(first.ids) and len(set(first.ids)) == len(first.ids)
    # The server runs this image now: launching again joins it.
    again = await launch(hub, "alice", spec_of(url, sha))
    assert again.phases[0] == "built" and again.phases[-1] == "ready", again.messages
    assert again.events[-1]["url"] == first.events[-1]["url"]
    # A client that saw the first events resumes after them, with later ids.
    resumed = await read_events(
        f"{hub.service_url}build/{spec_of(url, sha)}",
        headers={**hub.auth("alice"), "Last-Event-ID": "1"},
    )
    assert resumed.phases[-1] == "ready"
    assert min(resumed.ids) == 2


async def test_a_token_that_may_not_start_servers_is_told_which_scope_and_builds_nothing(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    token = hub.api(
        "POST",
        "users/alice/tokens",
        {"scopes": [f"access:services!service={SERVICE}", "custom:binderhub-service:build"]},
    )
    assert isinstance(token, dict)
    url, sha = git_server.make_repo("launch-denied", hello_repo(base_image, "denied"))
    stream = await launch(hub, "alice", spec_of(url, sha), token=token["token"])
    assert stream.phases == ["failed"]
    assert stream.events[0]["status_code"] == 403
    assert "servers!user=alice" in stream.messages[0]
    assert builds_of(hub, "alice", sha) == []


async def test_a_server_running_another_image_is_offered_then_replaced(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, "alice")
    hub.api("POST", "users/alice/server", {"image": "other:1"})
    url, sha = git_server.make_repo("launch-replace", hello_repo(base_image, "replace"))
    offered = await launch(hub, "alice", spec_of(url, sha))
    assert offered.phases[-1] == "failed"
    assert offered.events[-1]["status_code"] == 409
    assert offered.events[-1]["server_url"] == "/user/alice/"
    assert recorded_image(hub, "alice") == "other:1", "nothing was stopped"
    replaced = await launch(hub, "alice", spec_of(url, sha), query="replace=1")
    assert replaced.phases[-1] == "ready", replaced.messages[-3:]
    assert recorded_image(hub, "alice") == replaced.events[-1]["image"] != "other:1"


async def test_a_failed_build_gives_its_reason_and_starts_nothing(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, "bob")
    url, sha = git_server.make_repo("launch-broken", failing_repo(base_image))
    stream = await launch(hub, "bob", spec_of(url, sha))
    assert stream.phases[-1] == "failed"
    assert "Build failed" in stream.messages[-1]
    assert "launching" not in stream.phases
    model = hub.api("GET", "users/bob")
    assert isinstance(model, dict) and not model.get("servers")


async def test_a_failed_spawn_gives_the_hubs_message(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, FAILING_USER)
    url, sha = git_server.make_repo("launch-spawn-fails", hello_repo(base_image, "no"))
    stream = await launch(hub, FAILING_USER, spec_of(url, sha))
    assert stream.phases[-1] == "failed", stream.messages[-3:]
    assert "could not be started" in stream.messages[-1]


async def test_named_servers_are_named_after_the_repository_up_to_the_hubs_limit(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, "bob")
    first_url, first_sha = git_server.make_repo("launch-named-a", hello_repo(base_image, "a"))
    first = await launch(hub, "bob", spec_of(first_url, first_sha), service=NAMED)
    assert first.phases[-1] == "ready", first.messages[-3:]
    assert first.events[-1]["url"] == hub.url + f"user/bob/{server_name(first_url)}/"
    other_url, other_sha = git_server.make_repo("launch-named-b", hello_repo(base_image, "b"))
    second = await launch(hub, "bob", spec_of(other_url, other_sha), service=NAMED)
    assert second.phases[-1] == "failed"
    assert "maximum of 1 named servers" in second.messages[-1]
    stop_servers(hub, "bob")


async def test_a_saved_image_launches_for_its_owner_only(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    url, sha = git_server.make_repo("launch-saved", hello_repo(base_image, "saved"))
    built = await read_events(
        f"{hub.service_url}build/{spec_of(url, sha)}?build_only=true", headers=hub.auth("alice")
    )
    image = built.events[-1]["imageName"]
    request = urllib.request.Request(
        f"{hub.service_url}api/v1/images",
        method="POST",
        data=json.dumps({"name": "launch-saved", "image": image}).encode(),
        headers={**hub.auth("alice"), "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()
    stop_servers(hub, "alice")
    stream = await read_events(
        f"{hub.service_url}launch/saved/alice/launch-saved", headers=hub.auth("alice")
    )
    assert stream.phases[-1] == "ready", stream.messages[-3:]
    assert recorded_image(hub, "alice") == image
    refused = await read_events(
        f"{hub.service_url}launch/saved/alice/launch-saved", headers=hub.auth("bob")
    )
    assert refused.phases == ["failed"]
    assert refused.events[0]["status_code"] == 404


@pytest.mark.parametrize(
    ("query", "status", "path"),
    [
        ("labpath=notebooks/x.ipynb", 200, "doc/tree/notebooks/x.ipynb"),
        ("filepath=index.ipynb", 200, "tree/index.ipynb"),
        ("urlpath=https://evil.example/", 400, ""),
        ("urlpath=//evil.example/x", 400, ""),
    ],
)
def test_the_launch_page_maps_paths_and_refuses_other_sites(
    launch_hub: Hub, query: str, status: int, path: str
) -> None:
    hub = launch_hub
    link = f"{hub.service_url}v2/{spec_of('git://127.0.0.1:9/x.git', 'HEAD')}?{query}"
    request = urllib.request.Request(link, headers=hub.auth("alice"))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            code, html = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, html = e.code, e.read().decode()
    assert code == status
    assert f'data-path="{path}"' in html
    if status == 400:
        assert 'data-stream=""' in html
        assert "is not allowed" in html


async def test_a_slow_start_is_followed_with_the_hubs_progress_and_keepalives(
    launch_hub: Hub, git_server: GitServer, base_image: str
) -> None:
    hub = launch_hub
    stop_servers(hub, SLOW_USER)
    url, sha = git_server.make_repo("launch-slow", hello_repo(base_image, "slow"))
    built = await read_events(
        f"{hub.url_of(NAMED)}build/{spec_of(url, sha)}?build_only=true", headers=hub.auth("bob")
    )
    assert built.phases[-1] == "ready"
    # The image exists: every keepalive of this stream comes while the server starts.
    stream = await launch(hub, SLOW_USER, spec_of(url, sha), service=NAMED)
    assert stream.phases[0] == "built" and stream.phases[-1] == "ready", stream.messages[-3:]
    assert "launching" in stream.phases
    assert "keepalive" in stream.comments
    assert recorded_image(hub, SLOW_USER) == stream.events[-1]["image"]
    stop_servers(hub, SLOW_USER)
