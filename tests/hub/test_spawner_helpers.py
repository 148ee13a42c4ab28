"""The spawner hook's pure parts: build requests, URLs and event parsing."""

from __future__ import annotations

from binderhub_service.hub_servers import IMAGE_OPTION
from binderhub_service.spawner import BinderHubBuildHook, SSEParser, build_request, record_image


def test_git_repositories_are_sent_as_url_and_ref() -> None:
    body = build_request("https://example.org/a b/repo.git#?&on_behalf_of=x", "main")
    assert body == {"repo_url": "https://example.org/a b/repo.git#?&on_behalf_of=x", "ref": "main"}
    assert build_request("git://127.0.0.1:9418/r.git") == {
        "repo_url": "git://127.0.0.1:9418/r.git",
        "ref": "HEAD",
    }


def test_other_providers_send_their_spec() -> None:
    assert build_request("org/repo/", "v1.0", provider="gh") == {
        "provider": "gh",
        "spec": "org/repo/v1.0",
    }
    assert build_request("org/repo", "a#b?c", provider="gh")["spec"] == "org/repo/a%23b%3Fc"


def test_api_url_encodes_the_user() -> None:
    hook = BinderHubBuildHook(service_url="http://hub/services/binder/")
    url = hook.api_url("builds", on_behalf_of="a user&on_behalf_of=b#")
    assert (
        url == "http://hub/services/binder/api/v1/builds?on_behalf_of=a+user%26on_behalf_of%3Db%23"
    )


def test_sse_parser_handles_split_chunks_and_comments() -> None:
    events: list[dict] = []
    parser = SSEParser(events.append)
    for chunk in (
        b'id: 1\ndata: {"phase": "wai',
        b'ting"}\n\n:keepalive\n\n',
        b'data: {"a": 1}\r\n\r\n',
    ):
        parser.feed(chunk)
    assert events == [{"phase": "waiting"}, {"a": 1}]


def test_the_built_image_is_noted_in_the_spawns_options() -> None:
    class OrmSpawner:
        user_options: dict = {}

    class Spawner:
        user_options = {"repo": "https://example.org/r.git"}
        orm_spawner = OrmSpawner()

    spawner = Spawner()
    record_image(spawner, "reg/binder-r:1")
    expected = {"repo": "https://example.org/r.git", IMAGE_OPTION: "reg/binder-r:1"}
    assert spawner.user_options == expected
    assert spawner.orm_spawner.user_options == expected
