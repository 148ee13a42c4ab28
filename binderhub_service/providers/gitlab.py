"""GitLab projects: ``gl/<url-escaped namespace>/<ref>``."""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from traitlets import List, Unicode, default, validate

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from ..git_credentials import credential_env_value
from .base import RepoSpec
from .credentials import check_patterns, clone_opted_in
from .github import rate_limit_error
from .http import HTTPRepoProvider, join_url
from .validation import FULL_SHA, check_ref, check_text

# A project path: groups and subgroups, then the project, each made of
# letters, digits, '_', '-', '.' and not starting with '-' or '.'.
NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")


class GitLabRepoProvider(HTTPRepoProvider):
    """Projects on GitLab.com or a self-managed GitLab, resolved through API v4.

    Nested groups make the project path's depth unknown, so the path is
    URL-escaped into one segment: ``gl/group%2Fsubgroup%2Fproject/main``.
    """

    prefix = "gl"
    display_name = "GitLab.com"
    repo_label = "GitLab.com repository or URL"
    repo_placeholder = "example: https://gitlab.com/mosaik/examples/mosaik-tutorials-on-binder"
    url_encode = True
    spec_regex = r"^[^/]+/.+$"
    detect_regex = r"^(https?://gitlab\.com/)?(?<repo>.*?[^/])(\.git)?(/-/tree/(?<ref>.+?))?/?$"

    hostname = Unicode(
        "gitlab.com",
        help="""Host name of the GitLab instance. Default ``gitlab.com``.

        Clone URLs are ``https://{hostname}/{namespace}.git``; example ``gitlab.example.org``.
        """,
    ).tag(config=True)

    api_url = Unicode(
        help="""Base URL of the GitLab API v4. Default ``https://{hostname}/api/v4``.

        Set it when the API is not at the usual place, e.g. ``https://gitlab.example.org/api/v4``.
        """,
    ).tag(config=True)

    @default("api_url")
    def _api_url_default(self) -> str:
        return f"https://{self.hostname}/api/v4"

    clone_url_base = Unicode(
        help="""Base of clone URLs, ``{clone_url_base}/{namespace}.git``.

        Default ``https://{hostname}``.
        """,
    ).tag(config=True)

    @default("clone_url_base")
    def _clone_url_base_default(self) -> str:
        return f"https://{self.hostname}"

    private_token = Unicode(
        help="""GitLab access token (personal, group or project) for the API.

        Sent as the ``PRIVATE-TOKEN`` header; used for clones only of the
        projects ``clone_with_token`` names. Default: the
        ``GITLAB_PRIVATE_TOKEN`` environment variable, or none.
        """,
    ).tag(config=True)

    clone_with_token = List(
        Unicode(),
        help="""Projects whose clones also get ``private_token`` as their git credential.

        Regular expressions matched against the whole project path
        (``group/subgroup/project``), case-insensitive. Every builder can
        build, and so read, each private project named here that the token can
        see. Default: none, the token serves API calls only. Example:
        ``["my-group/.*"]``.
        """,
    ).tag(config=True)

    @validate("clone_with_token")
    def _valid_clone_with_token(self, proposal: Any) -> list[str]:
        return check_patterns(proposal["value"], "clone_with_token")

    @default("private_token")
    def _private_token_default(self) -> str:
        return os.environ.get("GITLAB_PRIVATE_TOKEN", "")

    def parse(self, spec: str) -> RepoSpec:
        escaped, sep, escaped_ref = spec.partition("/")
        if not sep or not escaped or not escaped_ref:
            raise InvalidSpec(
                "A GitLab spec looks like gl/<url-escaped project path>/<ref>, "
                "e.g. gl/group%2Fproject/main."
            )
        namespace = urllib.parse.unquote(escaped)
        check_text(namespace, "project path", 1024)
        if namespace.endswith(".git"):
            namespace = namespace[: -len(".git")]
        if not NAMESPACE.match(namespace) or ".." in namespace:
            raise InvalidSpec(f"{namespace!r} is not a valid GitLab project path.")
        ref = check_ref(urllib.parse.unquote(escaped_ref))
        base = self.clone_url_base.rstrip("/")
        host = urllib.parse.urlsplit(base).hostname or self.hostname
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=f"{base}/{namespace}.git",
            ref=ref,
            slug=f"{host}/{namespace}".lower(),
        )

    def _namespace(self, repo: RepoSpec) -> str:
        base = self.clone_url_base.rstrip("/") + "/"
        return repo.repo_url[len(base) : -len(".git")]

    def canonical_spec(self, repo: RepoSpec) -> str:
        return f"{urllib.parse.quote(self._namespace(repo), safe='')}/{repo.ref}"

    def git_credentials(self, repo: RepoSpec) -> str | None:
        if not self.private_token or not clone_opted_in(
            self.clone_with_token, self._namespace(repo)
        ):
            return None
        return credential_env_value("oauth2", self.private_token)

    async def resolve_ref(self, repo: RepoSpec) -> str:
        if FULL_SHA.match(repo.ref):
            return repo.ref
        namespace = self._namespace(repo)
        url = join_url(
            self.api_url,
            f"projects/{urllib.parse.quote(namespace, safe='')}/repository/commits/"
            f"{urllib.parse.quote(repo.ref, safe='')}",
        )
        headers = {"PRIVATE-TOKEN": self.private_token} if self.private_token else {}
        response = await self.fetch(url, headers=headers)
        if response.code == 404:
            raise RefNotFound(
                f"Could not find {repo.ref!r} in {namespace} on {self.hostname}: check the "
                "project path and ref (private projects need credentials configured by "
                "the operator)."
            )
        if response.code == 429:
            raise rate_limit_error(response, "GitLab")
        if response.code == 401:
            self.log.error("GitLab refused the configured token (HTTP 401)")
            raise UpstreamError(
                "GitLab refused this service's credentials; ask the operator to check them."
            )
        if response.code != 200:
            raise self.unexpected(response, f"{namespace}@{repo.ref}")
        sha = self.json_object(response).get("id")
        if not isinstance(sha, str) or not FULL_SHA.match(sha):
            raise self.unexpected(response, f"{namespace}@{repo.ref}: no commit id")
        return sha
