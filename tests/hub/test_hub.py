"""binderhub-service as a managed JupyterHub service, through a real hub and proxy."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import GitServer, Registry
from tests.repos import dockerfile, failing_repo, hello_repo
from tests.sse import read_events

from .conftest import LIMITED_RATE_PER_MINUTE, LIMITED_SERVICE, REPO_ROOT, SERVICE, Hub

pytestmark = [pytest.mark.hub, pytest.mark.docker]


def metric_total(hub: Hub, name: str) -> float:
    request = urllib.request.Request(hub.service_url + "metrics", headers=hub.auth("alice"))
    with urllib.request.urlopen(request) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_user_with_build_scope_builds(
    hub: Hub, git_server: GitServer, registry: Registry, base_image: str
) -> None:
    url, sha = git_server.make_repo("hub-alice", hello_repo(base_image, "hi from the hub"))
    stream = await read_events(hub.git_build_url(url, sha), headers=hub.auth("alice"))
    assert stream.status == 200
    assert stream.phases[-1] == "ready", stream.messages[-3:]
    image = stream.events[-1]["imageName"]
    assert image.startswith(f"{registry.host}/binder-") and image.endswith(f":{sha}")
    repository = image.split("/", 1)[1].rsplit(":", 1)[0]
    assert sha in registry.tags(repository)


async def assert_refused_and_nothing_built(
    hub: Hub, registry: Registry, build_url: str, repository: str, headers: dict[str, str]
) -> None:
    """The build request gets a single ``failed`` event with 403, and no build starts."""
    builds_before = metric_total(hub, "binderhub_build_count_total")
    stream = await read_events(build_url, headers=headers)
    assert stream.status == 200, "an event stream is never redirected"
    assert [e.get("status_code") for e in stream.events] == [403]
    assert stream.phases == ["failed"]
    await asyncio.sleep(0.5)
    assert metric_total(hub, "binderhub_inprogress_builds") == 0
    assert metric_total(hub, "binderhub_build_count_total") == builds_before
    assert registry.tags(repository) == []


@pytest.mark.parametrize("who", ["carol", "dave", "nobody", "unknown token"])
async def test_refused_without_build_scope_or_token(
    hub: Hub, git_server: GitServer, registry: Registry, base_image: str, who: str
) -> None:
    """No build scope, no access scope, no token, a token no hub issued: 403."""
    name = "hub-refused-" + who.replace(" ", "-")
    url, sha = git_server.make_repo(name, hello_repo(base_image, who))
    headers = {
        "carol": hub.auth("carol"),
        "dave": hub.auth("dave"),
        "nobody": {},
        "unknown token": {"Authorization": f"token {secrets.token_hex(16)}"},
    }[who]
    await assert_refused_and_nothing_built(
        hub, registry, hub.git_build_url(url, sha), f"binder-{name}", headers
    )


def service_whoami(service_url: str, headers: dict[str, str]) -> str:
    """The name a service's ``login`` route says the token belongs to."""
    request = urllib.request.Request(service_url + "login", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)["name"]


@pytest.mark.parametrize("user", ["alice", "mallory"])
@pytest.mark.parametrize("route", ["proxy", "direct"])
async def test_token_of_another_hub_is_refused(
    hub: Hub,
    other_hub: Hub,
    git_server: GitServer,
    registry: Registry,
    base_image: str,
    user: str,
    route: str,
) -> None:
    """A token the other hub's own service accepts is refused here, through the proxy or
    on the service's port, even for a user named like one of this hub's builders."""
    headers = other_hub.auth(user)
    assert service_whoami(other_hub.service_url, headers) == user, "valid on its own hub"
    name = f"hub-other-{user}-{route}"
    url, sha = git_server.make_repo(name, hello_repo(base_image, name))
    service_url = hub.service_url if route == "proxy" else hub.direct_url_of(SERVICE)
    build_url = hub.git_build_url(url, sha, service_url)
    await assert_refused_and_nothing_built(hub, registry, build_url, f"binder-{name}", headers)


def test_api_routes_answer_json_403_and_probes_stay_open(hub: Hub) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(hub.service_url + "metrics")
    assert e.value.code == 403
    assert json.load(e.value)["status"] == 403
    for path in ("health", "versions"):
        with urllib.request.urlopen(hub.service_url + path) as r:
            assert r.status == 200


class Browser:
    """A cookie-keeping client that follows redirects, as a browser would (sync)."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url: str) -> tuple[str, bytes]:
        with self.opener.open(url, timeout=30) as r:
            return r.url, r.read()

    def post_form(self, url: str, fields: dict[str, str]) -> tuple[str, bytes]:
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(url, data=data, timeout=30) as r:
            return r.url, r.read()

    def cookie(self, name: str, path: str) -> str:
        return next(c.value for c in self.jar if c.name == name and c.path == path)  # type: ignore[misc]

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


async def test_browser_login_then_cookie_needs_xsrf(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    browser = Browser()
    login_page = hub.service_url + "login"
    landed, body = await asyncio.to_thread(browser.get, login_page)
    assert landed.startswith(hub.url + "hub/login"), "sent to the hub's login form"
    hub_xsrf = browser.cookie("_xsrf", "/hub/")
    landed, body = await asyncio.to_thread(
        browser.post_form, landed, {"username": "alice", "password": "x", "_xsrf": hub_xsrf}
    )
    assert landed == login_page, "back on the service after OAuth"
    assert json.loads(body)["name"] == "alice"

    url, sha = git_server.make_repo("hub-browser", hello_repo(base_image, "browser"))
    build_url = hub.git_build_url(url, sha)
    cookies = {"Cookie": browser.cookie_header()}
    refused = await read_events(build_url, headers=cookies)
    assert [(e["phase"], e.get("status_code")) for e in refused.events] == [("failed", 403)]
    assert "XSRF" in refused.events[0]["message"]

    xsrf = browser.cookie("_xsrf", f"/services/{'binder'}/")
    accepted = await read_events(build_url, headers={**cookies, "X-XSRFToken": xsrf})
    assert accepted.phases[-1] == "ready", accepted.messages[-3:]


def test_binderhub_client_builds_through_the_hub(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    """The JavaScript client jupyterhub-fancy-profiles uses, with a hub token."""
    url, sha = git_server.make_repo("hub-js-client", hello_repo(base_image, "from node"))
    spec = "git/" + urllib.parse.quote(url, safe="") + "/" + sha
    result = subprocess.run(
        ["node", "build.mjs", hub.service_url + "build/", spec, hub.tokens["bob"]],
        cwd=REPO_ROOT / "tests" / "js",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["phase"] == "ready", events[-3:]
    assert events[-1]["imageName"].endswith(f":{sha}")


def spawn(hub: Hub, user: str, options: dict[str, str]) -> dict:
    """Ask the hub to start ``user``'s server; wait until it runs or the spawn failed."""
    try:
        hub.api("POST", f"users/{user}/server", options)
    except urllib.error.HTTPError as e:
        return {"error": json.load(e)["message"]}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        model = hub.api("GET", f"users/{user}")
        assert isinstance(model, dict)
        server = model["servers"].get("")
        if server is None:
            return {"error": "server gone"}
        if server["ready"]:
            return server
        time.sleep(0.5)
    raise TimeoutError(f"spawn of {user} did not finish")


def spawn_progress_message(hub: Hub, user: str) -> str:
    request = urllib.request.Request(
        f"{hub.url}hub/api/users/{user}/server/progress",
        headers={"Authorization": f"token {hub.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        text = r.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return events[-1]["message"] if events else ""


async def test_spawn_hook_builds_and_sets_the_image(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    url, sha = git_server.make_repo("hub-spawn", hello_repo(base_image, "spawned"))
    server = await asyncio.to_thread(spawn, hub, "bob", {"repo": url, "ref": sha})
    try:
        assert "error" not in server, server
        image = (hub.root / "bob.image").read_text()
        assert image.endswith(f":{sha}") and "/binder-" in image
    finally:
        await asyncio.to_thread(hub.api, "DELETE", "users/bob/server")


async def test_spawn_fails_with_the_build_failure(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    url, sha = git_server.make_repo("hub-spawn-fails", failing_repo(base_image))
    result = await asyncio.to_thread(spawn, hub, "carol", {"repo": url, "ref": sha})
    message = result.get("error", "")
    if message == "server gone" or not message:
        message = await asyncio.to_thread(spawn_progress_message, hub, "carol")
    assert "Build failed" in message, message
    assert not (hub.root / "carol.image").exists()


async def test_concurrent_builds_are_limited_per_user(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    slow_url, slow_sha = git_server.make_repo(
        "hub-slow", {"Dockerfile": dockerfile(base_image, "sleep 8")}
    )
    other_url, other_sha = git_server.make_repo("hub-other", hello_repo(base_image, "other"))
    slow = asyncio.create_task(
        read_events(hub.git_build_url(slow_url, slow_sha), headers=hub.auth("alice"))
    )
    deadline = time.monotonic() + 30
    while metric_total(hub, "binderhub_inprogress_builds") < 1:
        assert time.monotonic() < deadline, "the first build never started"
        await asyncio.sleep(0.2)

    second = await read_events(hub.git_build_url(other_url, other_sha), headers=hub.auth("alice"))
    assert [(e["phase"], e.get("status_code")) for e in second.events] == [("failed", 429)]
    assert re.search(r"[Tt]ry again", second.events[0]["message"])

    others = await read_events(hub.git_build_url(other_url, other_sha), headers=hub.auth("bob"))
    assert others.phases[-1] == "ready", others.messages[-3:]
    first = await slow
    assert first.phases[-1] == "ready", first.messages[-3:]


async def test_request_rate_is_limited_per_user(hub: Hub) -> None:
    """Beyond the rate a user gets 429 and when to retry; another user is unaffected.

    The limit is the same for every user of a service, and the other tests send
    many requests to the service under test, so this uses ``binder-limited``,
    a second service on the same hub with a low rate (its own counters). A build
    request for an unknown provider passes the limit and is answered 404.
    """
    url = hub.url_of(LIMITED_SERVICE) + "build/nope/spec?build_only=true"
    for _ in range(LIMITED_RATE_PER_MINUTE):
        allowed = await read_events(url, headers=hub.auth("alice"))
        assert allowed.events[-1]["status_code"] == 404
    refused = await read_events(url, headers=hub.auth("alice"))
    assert [(e["phase"], e.get("status_code")) for e in refused.events] == [("failed", 429)]
    assert re.search(r"Try again in \d+ seconds?\.", refused.events[0]["message"])

    for _ in range(LIMITED_RATE_PER_MINUTE):
        others = await read_events(url, headers=hub.auth("bob"))
        assert others.events[-1]["status_code"] == 404
