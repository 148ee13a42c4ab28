"""Any git repository by URL: ``git/<url-escaped URL>/<ref>``."""

from __future__ import annotations

import asyncio
import os
import urllib.parse

from traitlets import List, Unicode

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from .base import RepoProvider, RepoSpec
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

    def parse(self, spec: str) -> RepoSpec:
        escaped_url, sep, escaped_ref = spec.partition("/")
        if not sep or not escaped_url or not escaped_ref:
            raise InvalidSpec(
                "A git spec looks like git/<url-escaped repository URL>/<ref>, "
                "e.g. git/https%3A%2F%2Fexample.org%2Frepo.git/main."
            )
        url = check_repo_url(urllib.parse.unquote(escaped_url), self.allowed_schemes)
        ref = check_ref(urllib.parse.unquote(escaped_ref))
        slug = url.split("://", 1)[1].rstrip("/")
        if slug.endswith(".git"):
            slug = slug[: -len(".git")]
        return RepoSpec(provider=self.prefix, spec=spec, repo_url=url, ref=ref, slug=slug)

    def _git_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        return env

    async def resolve_ref(self, repo: RepoSpec) -> str:
        if FULL_SHA.match(repo.ref):
            return repo.ref
        listing = await self._ls_remote(repo.repo_url, repo.ref)
        sha = choose_ref(listing, repo.ref)
        if sha is None:
            raise RefNotFound(
                f"No branch, tag or ref named {repo.ref!r} in {redact_url(repo.repo_url)}."
            )
        return sha

    async def _ls_remote(self, url: str, ref: str) -> str:
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
            ref,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._git_env(),
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
                redact_text(err.decode(errors="replace"), url),
            )
            raise UpstreamError(
                f"Could not read the repository at {shown_url}: check that the URL is right "
                "and that the repository is public."
            )
        return out.decode(errors="replace")
