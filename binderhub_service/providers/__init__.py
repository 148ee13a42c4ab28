"""Repository providers: parse a spec, validate it, resolve its ref to something immutable."""

from .base import RepoProvider, RepoSpec
from .catalog import RepoProviderCatalog
from .ckan import CKANRepoProvider
from .dataverse import DataverseRepoProvider
from .figshare import FigshareRepoProvider
from .gist import GistRepoProvider
from .git import GitRepoProvider
from .github import GitHubRepoProvider
from .gitlab import GitLabRepoProvider
from .hydroshare import HydroShareRepoProvider
from .zenodo import ZenodoRepoProvider

__all__ = [
    "CKANRepoProvider",
    "DataverseRepoProvider",
    "FigshareRepoProvider",
    "GistRepoProvider",
    "GitHubRepoProvider",
    "GitLabRepoProvider",
    "GitRepoProvider",
    "HydroShareRepoProvider",
    "RepoProvider",
    "RepoProviderCatalog",
    "RepoSpec",
    "ZenodoRepoProvider",
]
