"""Against the real internet; left out of CI (``-m "not network"``).

Run with ``python -m pytest -m network`` on a machine that can reach GitHub and Zenodo.
"""

from __future__ import annotations

import pytest

from binderhub_service.providers.github import GitHubRepoProvider
from binderhub_service.providers.validation import FULL_SHA
from binderhub_service.providers.zenodo import ZenodoRepoProvider

pytestmark = pytest.mark.network


async def test_resolve_a_real_github_branch():
    provider = GitHubRepoProvider()
    repo = provider.parse("jupyterhub/binderhub/main")
    assert FULL_SHA.match(await provider.resolve_ref(repo))


async def test_resolve_a_real_zenodo_doi():
    provider = ZenodoRepoProvider()
    repo = provider.parse("10.5281/zenodo.3242074")
    assert (await provider.resolve_ref(repo)).isdigit()
