"""The interface every repository provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable


@dataclass(frozen=True)
class RepoSpec:
    """A parsed and validated request for a repository at a ref.

    ``slug`` identifies the repository for image naming (stable across refs);
    ``ref`` is the ref as asked for, not yet resolved.
    """

    provider: str
    spec: str
    repo_url: str
    ref: str
    slug: str


class RepoProvider(LoggingConfigurable):
    """One family of repository specs (``gh``, ``git``, ...).

    A provider is configured once and used for every request with its prefix:
    :meth:`parse` validates a spec without any I/O; :meth:`resolve_ref` asks
    upstream what the ref points to now and returns an immutable identifier
    (a full commit sha for git hosts) that becomes the image tag.
    """

    prefix = ""
    display_name = ""

    resolve_timeout = Float(
        30.0,
        help="Seconds to wait for the upstream host when resolving a ref. Default 30.",
    ).tag(config=True)

    def parse(self, spec: str) -> RepoSpec:
        raise NotImplementedError

    async def resolve_ref(self, repo: RepoSpec) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What UIs need to build a form for this provider."""
        return {"provider": self.prefix, "display_name": self.display_name}
