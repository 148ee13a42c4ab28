"""Repository providers: parse a spec, validate it, resolve its ref to something immutable."""

from .base import RepoProvider, RepoSpec

__all__ = ["RepoProvider", "RepoSpec"]
