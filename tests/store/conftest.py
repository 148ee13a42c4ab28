"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL.

The ``db_url`` fixture (tests/conftest.py) gives SQLite and the real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from binderhub_service.store import Store


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An open store at the newest schema."""
    store = Store(db_url)
    await store.open()
    yield store
    await store.close()
