"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``.ci/setup-postgres`` (URL in ``BHS_TEST_POSTGRES_URL``);
when it cannot be reached the PostgreSQL variants fail, they never skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from binderhub_service.store import Store

POSTGRES_URL = os.environ.get(
    "BHS_TEST_POSTGRES_URL",
    "postgresql+asyncpg://binderhub_test:binderhub_test@127.0.0.1:5432/binderhub_test",
)


async def empty_postgres(url: str) -> None:
    """Drop every table of the test database."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the PostgreSQL test database emptied."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite'}"
    await empty_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An open store at the newest schema."""
    store = Store(db_url)
    await store.open()
    yield store
    await store.close()
