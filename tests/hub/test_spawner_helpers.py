"""The spawner hook's pure parts: build specs and event parsing."""

from __future__ import annotations

from binderhub_service.spawner import BinderHubBuildHook, SSEParser, build_spec


def test_git_spec_escapes_the_url_into_one_segment() -> None:
    spec = build_spec("https://example.org/a b/repo.git", "main")
    assert spec == "git/https%3A%2F%2Fexample.org%2Fa%20b%2Frepo.git/main"
    assert (
        build_spec("git://127.0.0.1:9418/r.git") == "git/git%3A%2F%2F127.0.0.1%3A9418%2Fr.git/HEAD"
    )


def test_other_providers_keep_their_spec() -> None:
    assert build_spec("org/repo/", "v1.0", provider="gh") == "gh/org/repo/v1.0"


def test_build_url_names_the_user() -> None:
    hook = BinderHubBuildHook(service_url="http://hub/services/binder")
    url = hook.build_url("a user", "git/x/HEAD")
    assert url == "http://hub/services/binder/build/git/x/HEAD?build_only=true&on_behalf_of=a+user"


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
