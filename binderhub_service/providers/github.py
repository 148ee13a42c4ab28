"""GitHub repositories: ``gh/<owner>/<repo>/<ref>``."""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from tornado.httpclient import HTTPResponse
from traitlets import Int, List, Unicode, default, validate

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from ..git_credentials import credential_env_value
from .base import RepoSpec
from .cache import ResolutionCache
from .credentials import check_patterns, clone_opted_in
from .http import HTTPRepoProvider, host_of, join_url
from .validation import FULL_SHA, check_ref, check_text

# GitHub's rules: owners are alphanumeric with single inner hyphens, at most
# 39 characters; repository names use letters, digits, '.', '-' and '_'.
OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
REPO_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def split_owner_repo_ref(spec: str, example: str) -> tuple[str, str, str]:
    """Split ``owner/repo/ref`` (the ref may contain ``/``), refusing other shapes."""
    parts = spec.split("/", 2)
    if len(parts) != 3 or not all(parts):
        hint = f' Did you mean "{spec}/HEAD"?' if len(parts) == 2 and all(parts) else ""
        raise InvalidSpec(f"The spec must look like {example}.{hint}")
    return parts[0], parts[1], parts[2]


def check_owner_repo(owner: str, repo: str) -> tuple[str, str]:
    """Validate a GitHub owner and repository name; strips a ``.git`` suffix."""
    check_text(owner, "owner", 39)
    if not OWNER.match(owner):
        raise InvalidSpec(f"{owner!r} is not a valid GitHub user or organisation name.")
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    check_text(repo, "repository name", 100)
    if not REPO_NAME.match(repo) or repo in (".", ".."):
        raise InvalidSpec(f"{repo!r} is not a valid GitHub repository name.")
    return owner, repo


def rate_limit_error(response: HTTPResponse, service: str) -> UpstreamError:
    """The user-facing error for an exhausted API rate limit."""
    reset = response.headers.get("X-RateLimit-Reset") or response.headers.get("RateLimit-Reset", "")
    if reset.isdigit():
        at = datetime.fromtimestamp(int(reset), tz=UTC)
        minutes = max(1, -(-(int(reset) - int(time.time())) // 60))
        when = f"it resets at {at:%H:%M} UTC (in about {minutes} minute{'s' * (minutes != 1)})"
    else:
        when = "it resets within the hour"
    return UpstreamError(
        f"{service}'s API rate limit for this service is used up; {when}. Try again then."
    )


class GitHubRepoProvider(HTTPRepoProvider):
    """Repositories on GitHub (or GitHub Enterprise), resolved through GitHub's REST API.

    Branch and tag lookups are conditional requests: the last ETag for each
    (owner, repo, ref) is sent as ``If-None-Match`` and a ``304`` answer, which
    does not count against the rate limit, reuses the remembered commit.
    """

    prefix = "gh"
    display_name = "GitHub"
    repo_label = "GitHub repository name or URL"
    repo_placeholder = (
        "example: binder-examples/requirements or https://github.com/binder-examples/requirements"
    )
    spec_regex = r"^[^/]+/[^/]+/.+$"
    detect_regex = r"^(https?://github\.com/)?(?<repo>[^/]+/[^/]+?)(\.git)?(/tree/(?<ref>.+?))?/?$"

    api_url = Unicode(
        "https://api.github.com",
        help="""Base URL of the GitHub REST API. Default ``https://api.github.com``.

        For GitHub Enterprise Server: ``https://github.example.org/api/v3``.
        """,
    ).tag(config=True)

    clone_url_base = Unicode(
        "https://github.com",
        help="""Clone URLs are from ``{clone_url_base}/{owner}/{repo}``.

        Default ``https://github.com``; for GitHub Enterprise e.g. ``https://github.example.org``.
        """,
    ).tag(config=True)

    access_token = Unicode(
        help="""Token for GitHub's API, sent as ``Authorization: token ...``.

        A personal access token or an app installation token; raises the API
        rate limit from 60 to 5000 requests an hour. It is used for clones only
        of the repositories ``clone_with_token`` names. Default: the
        ``GITHUB_ACCESS_TOKEN`` environment variable, or none.
        """,
    ).tag(config=True)

    clone_with_token = List(
        Unicode(),
        help="""Repositories whose clones also get ``access_token`` as their git credential.

        Regular expressions matched against the whole ``owner/repo`` (for gists
        ``user/gist id``), case-insensitive. Every builder can build, and so
        read, each private repository named here that the token can see.
        Default: none, the token serves API calls only. Example:
        ``["my-org/private-.*"]``.
        """,
    ).tag(config=True)

    @validate("clone_with_token")
    def _valid_clone_with_token(self, proposal: Any) -> list[str]:
        return check_patterns(proposal["value"], "clone_with_token")

    @default("access_token")
    def _access_token_default(self) -> str:
        return os.environ.get("GITHUB_ACCESS_TOKEN", "")

    cache_size = Int(
        1024,
        help="How many resolved refs (with their ETags) to remember. Default 1024.",
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.cache = ResolutionCache(self.cache_size)

    def parse(self, spec: str) -> RepoSpec:
        owner, name, ref = split_owner_repo_ref(spec, "gh/<owner>/<repo>/<ref>")
        owner, name = check_owner_repo(owner, name)
        ref = check_ref(ref)
        base = self.clone_url_base.rstrip("/")
        host = urllib.parse.urlsplit(base).hostname or "github.com"
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=f"{base}/{owner}/{name}",
            ref=ref,
            slug=f"{host}/{owner}/{name}".lower(),
        )

    def canonical_spec(self, repo: RepoSpec) -> str:
        owner, name = repo.repo_url.rsplit("/", 2)[1:]
        return f"{owner}/{name}/{repo.ref}"

    def git_credentials(self, repo: RepoSpec) -> str | None:
        identity = repo.slug.split("/", 1)[1]
        if not self.access_token or not clone_opted_in(self.clone_with_token, identity):
            return None
        return credential_env_value("x-access-token", self.access_token)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json"}
        if self.access_token:
            headers["Authorization"] = f"token {self.access_token}"
        return headers

    async def resolve_ref(self, repo: RepoSpec) -> str:
        if FULL_SHA.match(repo.ref):
            return repo.ref
        owner, name = repo.repo_url.rsplit("/", 2)[1:]
        key = (owner.lower(), name.lower(), repo.ref)
        url = join_url(
            self.api_url,
            f"repos/{owner}/{name}/commits/{urllib.parse.quote(repo.ref, safe='/')}",
        )
        headers = self._headers()
        cached = self.cache.get_conditional(key)
        if cached is not None:
            headers["If-None-Match"] = cached.etag
        response = await self.fetch(url, headers=headers)
        if response.code == 304 and cached is not None:
            self.log.debug("%s/%s@%s unchanged: %s", owner, name, repo.ref, cached.value)
            return cached.value
        self._check_rate_limit(response)
        if response.code in (404, 422):
            self.cache.forget(key)
            raise RefNotFound(
                f"Could not find {repo.ref!r} in {owner}/{name} on {host_of(repo.repo_url)}: "
                "check the repository name and ref (private repositories need "
                "credentials configured by the operator)."
            )
        if response.code == 401:
            self.log.error("GitHub refused the configured access token (HTTP 401)")
            raise UpstreamError(
                "GitHub refused this service's credentials; ask the operator to check them."
            )
        if response.code != 200:
            raise self.unexpected(response, f"{owner}/{name}@{repo.ref}")
        sha = self.json_object(response).get("sha")
        if not isinstance(sha, str) or not FULL_SHA.match(sha):
            raise self.unexpected(response, f"{owner}/{name}@{repo.ref}: no commit sha")
        etag = response.headers.get("ETag")
        if etag:
            self.cache.set_conditional(key, etag, sha)
        return sha

    def _check_rate_limit(self, response: HTTPResponse) -> None:
        """Log how much of the rate limit is left; raise if it is used up."""
        self._log_rate_limit(response)
        exhausted = response.headers.get("X-RateLimit-Remaining") == "0"
        if response.code == 429 or (response.code == 403 and exhausted):
            raise rate_limit_error(response, "GitHub")

    def _log_rate_limit(self, response: HTTPResponse) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining", "")
        limit = response.headers.get("X-RateLimit-Limit", "")
        if not (remaining.isdigit() and limit.isdigit() and int(limit)):
            return
        fraction = int(remaining) / int(limit)
        log = self.log.warning if fraction < 0.2 else self.log.debug
        log("GitHub API rate limit: %s of %s requests left", remaining, limit)
