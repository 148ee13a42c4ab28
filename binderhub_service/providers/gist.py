"""GitHub gists: ``gist/<user>/<gist id>[/<ref>]``."""

from __future__ import annotations

import json
import re
import urllib.parse

from traitlets import Bool, Unicode

from ..errors import Forbidden, InvalidSpec, RefNotFound
from .base import RepoSpec
from .github import OWNER, GitHubRepoProvider
from .http import join_url
from .validation import FULL_SHA, check_text

GIST_ID = re.compile(r"^[0-9a-fA-F]{1,64}$")
LATEST = frozenset({"", "HEAD", "master", "main"})


class GistRepoProvider(GitHubRepoProvider):
    """A gist, at its latest version or at one version (a full commit sha) of its history.

    Shares GitHub's API settings (``api_url``, ``access_token``), which
    ``GitHubRepoProvider`` configuration also sets. Secret gists are refused
    unless ``allow_secret_gist`` is set.
    """

    prefix = "gist"
    display_name = "GitHub Gist"
    repo_label = "Gist ID (username/gistId) or URL"
    repo_placeholder = "example: username/0123456789abcdef0123"
    spec_regex = r"^[^/]+/[^/]+(/[^/]+)?$"
    detect_regex = (
        r"^(https?://gist\.github\.com/)?(?<repo>[^/]+/[0-9a-fA-F]+)(/(?<ref>[0-9a-f]{40}))?/?$"
    )

    clone_url_base = Unicode(
        "https://gist.github.com",
        help="""Base of gist clone URLs, ``{clone_url_base}/{gist id}.git``.

        Default ``https://gist.github.com``.
        """,
    ).tag(config=True)

    allow_secret_gist = Bool(
        False,
        help="Build secret (unlisted) gists too. Default False: only public gists.",
    ).tag(config=True)

    def parse(self, spec: str) -> RepoSpec:
        parts = spec.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidSpec("A gist spec looks like gist/<user>/<gist id>[/<ref>].")
        user, gist_id = parts[0], parts[1]
        ref = parts[2] if len(parts) == 3 else "HEAD"
        check_text(user, "user name", 39)
        if not OWNER.match(user):
            raise InvalidSpec(f"{user!r} is not a valid GitHub user name.")
        check_text(gist_id, "gist id", 64)
        if not GIST_ID.match(gist_id):
            raise InvalidSpec(f"{gist_id!r} is not a gist id.")
        check_text(ref, "ref", 40)
        if ref not in LATEST and not FULL_SHA.match(ref):
            raise InvalidSpec("A gist's ref is HEAD (its latest version) or a full commit sha.")
        base = self.clone_url_base.rstrip("/")
        host = urllib.parse.urlsplit(base).hostname or "gist.github.com"
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=f"{base}/{gist_id}.git",
            ref=ref,
            slug=f"{host}/{user}/{gist_id}".lower(),
        )

    def canonical_spec(self, repo: RepoSpec) -> str:
        user, gist_id = repo.slug.split("/")[1:]
        return f"{user}/{gist_id}/{repo.ref}"

    async def resolve_ref(self, repo: RepoSpec) -> str:
        user, gist_id = repo.slug.split("/")[1:]
        if FULL_SHA.match(repo.ref):
            known = self.cache.get_immutable((gist_id, repo.ref))
            if known is not None:
                return known
        gist = await self._gist(gist_id)
        if str(gist.get("owner")).lower() != user:
            raise RefNotFound(f"The gist {gist_id} does not belong to {user}.")
        if not gist.get("public") and not self.allow_secret_gist:
            raise Forbidden("Secret gists cannot be built here; make the gist public.")
        versions = [v for v in gist.get("versions", []) if isinstance(v, str) and FULL_SHA.match(v)]
        if not versions:
            raise RefNotFound(f"The gist {gist_id} has no versions.")
        if repo.ref in LATEST:
            return versions[0]
        if repo.ref not in versions:
            raise RefNotFound(f"{repo.ref} is not a version of the gist {gist_id}.")
        self.cache.set_immutable((gist_id, repo.ref), repo.ref)
        return repo.ref

    async def _gist(self, gist_id: str) -> dict:
        """Owner, visibility and history of a gist, asked conditionally."""
        key = ("gist", gist_id)
        headers = self._headers()
        cached = self.cache.get_conditional(key)
        if cached is not None:
            headers["If-None-Match"] = cached.etag
        response = await self.fetch(join_url(self.api_url, f"gists/{gist_id}"), headers=headers)
        if response.code == 304 and cached is not None:
            return json.loads(cached.value)
        self._check_rate_limit(response)
        if response.code == 404:
            self.cache.forget(key)
            raise RefNotFound(f"There is no gist {gist_id}.")
        if response.code != 200:
            raise self.unexpected(response, f"gist {gist_id}")
        body = self.json_object(response)
        owner = body.get("owner")
        gist = {
            "owner": owner.get("login") if isinstance(owner, dict) else None,
            "public": body.get("public") is True,
            "versions": [
                entry.get("version")
                for entry in body.get("history") or ()
                if isinstance(entry, dict)
            ],
        }
        etag = response.headers.get("ETag")
        if etag:
            self.cache.set_conditional(key, etag, json.dumps(gist))
        return gist
