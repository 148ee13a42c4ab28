"""Any git repository by URL: ``git/<url-escaped URL>/<ref>``."""

from __future__ import annotations

import asyncio
import os
import urllib.parse

from traitlets import Dict, List, Unicode, validate

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from .base import RepoProvider, RepoSpec
from .credentials import credential_env_value, git_credential_env
from .validation import FULL_SHA, check_ref, check_repo_url, redact_text, redact_url


def choose_ref(listing: str, ref: str) -> str | None:
    """Pick the commit ``ref`` names from ``git ls-remote`` output.

    Branches win over tags and a peeled tag (``^{}``, the commit an annotated
    tag points to) over the tag object itself; ``HEAD`` and full ref names such
    as ``refs/pull/1/head`` match exactly.
    """
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if FULL_SHA.match(sha) and name:
            refs[name] = sha
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref):
        if candidate in refs:
            return refs[candidate]
    return None


class GitRepoProvider(RepoProvider):
    """A repository at any git URL whose scheme is allowed."""

    prefix = "git"
    display_name = "Git repository"
    repo_label = "Arbitrary git repository URL"
    repo_placeholder = "example: https://git.example.org/project/repo.git"
    url_encode = True

    allowed_schemes = List(
        Unicode(),
        ["https", "git"],
        help="""URL schemes accepted for ``git`` specs. Default ``["https", "git"]``.

        Add ``"http"`` for plain-http servers, or ``"file"`` to build from paths on
        the service's machine (never on a shared service). Remote helpers such
        as ``ext::`` are always refused.
        """,
    ).tag(config=True)

    git_executable = Unicode("git", help="The git command used for `git ls-remote`.").tag(
        config=True
    )

    credentials_by_host = Dict(
        value_trait=Dict(value_trait=Unicode()),
        help="""Git credentials for private repositories, by host.

        ``{"git.example.org": {"username": "builder", "password": "TOKEN"}}``;
        a key may include a port (``"git.example.org:8443"``), which is tried
        first. Used for ``https`` (and ``http``) URLs both by `git ls-remote`
        and, through ``GIT_CREDENTIAL_ENV``, by repo2docker's clone; never put
        in URLs or on command lines. Default: none.
        """,
    ).tag(config=True)

    @validate("credentials_by_host")
    def _valid_credentials(self, proposal: dict) -> dict[str, dict[str, str]]:
        credentials = {}
        for host, entry in proposal["value"].items():
            username, password = entry.get("username", ""), entry.get("password", "")
            # Raises on values git's credential helper could not pass through.
            credential_env_value(username, password)
            credentials[host.lower()] = {"username": username, "password": password}
        return credentials

    def canonical_spec(self, repo: RepoSpec) -> str:
        return f"{urllib.parse.quote(repo.repo_url, safe='')}/{repo.ref}"

    def git_credentials(self, repo: RepoSpec) -> str | None:
        parts = urllib.parse.urlsplit(repo.repo_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return None
        candidates = [parts.hostname]
        if parts.port:
            candidates.insert(0, f"{parts.hostname}:{parts.port}")
        for host in candidates:
            entry = self.credentials_by_host.get(host)
            if entry:
                return credential_env_value(entry["username"], entry["password"])
        return None

    def parse(self, spec: str) -> RepoSpec:
        escaped_url, sep, escaped_ref = spec.partition("/")
        if not sep or not escaped_url or not escaped_ref:
            raise InvalidSpec(
                "A git spec looks like git/<url-escaped repository URL>/<ref>, "
                "e.g. git/https%3A%2F%2Fexample.org%2Frepo.git/main."
            )
        url = check_repo_url(urllib.parse.unquote(escaped_url), self.allowed_schemes)
        if urllib.parse.urlsplit(url).password is not None:
            raise InvalidSpec(
                "Repository URLs must not contain a password: the service's operator "
                "configures credentials for private repositories."
            )
        ref = check_ref(urllib.parse.unquote(escaped_ref))
        slug = redact_url(url).split("://", 1)[1].rstrip("/")
        if slug.endswith(".git"):
            slug = slug[: -len(".git")]
        return RepoSpec(provider=self.prefix, spec=spec, repo_url=url, ref=ref, slug=slug)

    def _git_env(self, repo: RepoSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        credentials = self.git_credentials(repo)
        if credentials:
            env.update(git_credential_env(credentials, repo.repo_url))
        return env

    async def resolve_ref(self, repo: RepoSpec) -> str:
        if FULL_SHA.match(repo.ref):
            return repo.ref
        listing = await self._ls_remote(repo)
        sha = choose_ref(listing, repo.ref)
        if sha is None:
            raise RefNotFound(
                f"No branch, tag or ref named {repo.ref!r} in {redact_url(repo.repo_url)}."
            )
        return sha

    def _redact(self, text: str, repo: RepoSpec) -> str:
        """``text`` without the credentials of ``repo``'s URL or host."""
        text = redact_text(text, repo.repo_url)
        host = urllib.parse.urlsplit(repo.repo_url).hostname or ""
        for key, entry in self.credentials_by_host.items():
            if key.split(":")[0] == host:
                text = text.replace(entry["password"], "***")
        return text

    async def _ls_remote(self, repo: RepoSpec) -> str:
        url = repo.repo_url
        # Only the allowed transports may run, whatever git's own defaults are.
        protocol_config = ["-c", "protocol.allow=never"]
        for scheme in sorted(set(self.allowed_schemes)):
            protocol_config += ["-c", f"protocol.{scheme}.allow=always"]
        proc = await asyncio.create_subprocess_exec(
            self.git_executable,
            *protocol_config,
            "ls-remote",
            "--",
            url,
            repo.ref,
            # An annotated tag's commit is listed only when asked for by this name.
            f"{repo.ref}^{{}}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._git_env(repo),
        )
        shown_url = redact_url(url)
        try:
            async with asyncio.timeout(self.resolve_timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise UpstreamError(
                f"{shown_url} did not answer within {self.resolve_timeout:g} seconds; "
                "try again later."
            ) from None
        if proc.returncode != 0:
            self.log.warning(
                "git ls-remote %s failed with exit code %s: %s",
                shown_url,
                proc.returncode,
                self._redact(err.decode(errors="replace"), repo),
            )
            raise UpstreamError(
                f"Could not read the repository at {shown_url}: check that the URL is right "
                "and that the repository is public."
            )
        return out.decode(errors="replace")
