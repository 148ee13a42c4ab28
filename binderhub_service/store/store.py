"""The Store: every query on build records, logs and saved images.

One async engine per Store; every method is one transaction. Nothing connects
before :meth:`Store.open`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    case,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from ..image_access import Visibility
from ..states import UNFINISHED_STATES
from ..text import clean_value
from .models import BuildLogEvent, BuildRecord, BuildRequester, SavedImage


@dataclass(frozen=True)
class BuildFilter:
    """Which build records a listing returns.

    ``visible_to`` is the user whose records (started or joined) are listed,
    or None for all records (an admin).
    """

    visible_to: str | None = None
    states: Sequence[str] = ()
    requester: str | None = None
    repo_url: str | None = None
    since: float | None = None
    failure_classes: Sequence[str] = ()


def alembic_config(url: str = "") -> Config:
    """An Alembic configuration for the migrations shipped in this package."""
    config = Config()
    config.set_main_option("script_location", "binderhub_service.store:migrations")
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _clean(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose strings are valid text (see :func:`~binderhub_service.text.clean_text`)."""
    return [clean_value(row) for row in rows]


class Store:
    """Build records, their logs and saved images in a SQL database.

    ``url`` is an async SQLAlchemy URL: ``sqlite+aiosqlite:///path`` or
    ``postgresql+asyncpg://user:password@host/db``. Every string written is
    cleaned of control characters first, so no value can make a write fail
    on PostgreSQL (which refuses NUL). A SQLite database file is readable by
    the service's user only.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not open")
        return self._engine

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def open(self, revision: str = "head") -> None:
        """Connect and bring the schema to ``revision`` (the newest by default)."""
        self._engine = create_async_engine(self.url)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        await self.migrate(revision)
        self._restrict_sqlite_files()

    def _restrict_sqlite_files(self) -> None:
        """Make a SQLite database (and its journal files) readable by this user only."""
        path = make_url(self.url).database
        if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return
        for name in (path, f"{path}-wal", f"{path}-shm"):
            if os.path.exists(name):
                os.chmod(name, 0o600)

    async def migrate(self, revision: str) -> None:
        """Upgrade the schema to ``revision``."""

        await self._alembic(command.upgrade, revision)

    async def downgrade(self, revision: str) -> None:
        """Take the schema back to an older revision (``base`` removes every table)."""
        await self._alembic(command.downgrade, revision)

    async def _alembic(self, step: Callable[[Config, str], None], revision: str) -> None:
        def run(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, revision)

        async with self.engine.begin() as connection:
            await connection.run_sync(run)

    @staticmethod
    def _current_revision(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async def revision(self) -> str | None:
        """The schema revision the database is at."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(self._current_revision)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def write(
        self,
        new_builds: Sequence[dict[str, Any]] = (),
        events: Sequence[dict[str, Any]] = (),
        updates: Sequence[dict[str, Any]] = (),
    ) -> None:
        """In one transaction: insert builds (and their starters), log events, update builds."""
        new_builds, events, updates = _clean(new_builds), _clean(events), _clean(updates)
        async with self.engine.begin() as conn:
            if new_builds:
                await conn.execute(insert(BuildRecord), new_builds)
                await conn.execute(
                    insert(BuildRequester),
                    [{"build_id": b["id"], "user": b["requester"]} for b in new_builds],
                )
            if events:
                await conn.execute(insert(BuildLogEvent), events)
            for values in updates:
                await conn.execute(
                    update(BuildRecord).where(BuildRecord.id == values["id"]).values(**values)
                )

    async def add_requester(self, build_id: str, user: str) -> None:
        """Let ``user`` see a build they joined."""
        user = clean_value(user)
        async with self.engine.begin() as conn:
            known = await conn.scalar(
                select(BuildRequester.user).where(
                    BuildRequester.build_id == build_id, BuildRequester.user == user
                )
            )
            if known is None:
                await conn.execute(insert(BuildRequester).values(build_id=build_id, user=user))

    async def get_build(self, build_id: str, visible_to: str | None = None) -> BuildRecord | None:
        """The record of a build, if it exists and ``visible_to`` (None: anyone) may see it."""
        query = select(BuildRecord).where(BuildRecord.id == build_id)
        if visible_to is not None:
            query = query.where(self._visible(visible_to))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return self._record(row)

    async def latest_build(
        self, image_name: str, state: str, visible_to: str | None = None
    ) -> BuildRecord | None:
        """The newest record of a build of ``image_name`` in ``state``."""
        query = select(BuildRecord).where(
            BuildRecord.image_name == image_name, BuildRecord.state == state
        )
        if visible_to is not None:
            query = query.where(self._visible(visible_to))
        query = query.order_by(BuildRecord.seq.desc()).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return self._record(row)

    async def list_builds(
        self, where: BuildFilter, before: int | None = None, limit: int = 50
    ) -> list[BuildRecord]:
        """Records matching ``where``, newest first, with ``seq`` below ``before``."""
        query = select(BuildRecord)
        if where.visible_to is not None:
            query = query.where(self._visible(where.visible_to))
        if where.states:
            query = query.where(BuildRecord.state.in_(where.states))
        if where.requester is not None:
            query = query.where(BuildRecord.requester == where.requester)
        if where.repo_url is not None:
            query = query.where(BuildRecord.repo_url == where.repo_url)
        if where.failure_classes:
            query = query.where(BuildRecord.failure_class.in_(where.failure_classes))
        if where.since is not None:
            query = query.where(BuildRecord.created >= where.since)
        if before is not None:
            query = query.where(BuildRecord.seq < before)
        query = query.order_by(BuildRecord.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [r for r in map(self._record, rows) if r is not None]

    async def unfinished_builds(self) -> list[BuildRecord]:
        """Records of builds that never reached a final state."""
        query = select(BuildRecord).where(BuildRecord.state.in_(UNFINISHED_STATES))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(BuildRecord.seq))).all()
        return [r for r in map(self._record, rows) if r is not None]

    async def last_event_number(self, build_id: str) -> int:
        async with self.engine.connect() as conn:
            number = await conn.scalar(
                select(BuildLogEvent.number)
                .where(BuildLogEvent.build_id == build_id)
                .order_by(BuildLogEvent.number.desc())
                .limit(1)
            )
        return number or 0

    async def last_log_position(self, build_id: str) -> str | None:
        """The executor's log position of the last stored event that has one."""
        async with self.engine.connect() as conn:
            position: str | None = await conn.scalar(
                select(BuildLogEvent.log_position)
                .where(BuildLogEvent.build_id == build_id, BuildLogEvent.log_position.is_not(None))
                .order_by(BuildLogEvent.number.desc())
                .limit(1)
            )
        return position

    async def events(
        self, build_id: str, after: int = 0, page: int = 1000
    ) -> AsyncIterator[tuple[int, str]]:
        """The stored log of a build from event ``after + 1``: (number, JSON) pairs."""
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(BuildLogEvent.number, BuildLogEvent.data)
                        .where(BuildLogEvent.build_id == build_id, BuildLogEvent.number > after)
                        .order_by(BuildLogEvent.number)
                        .limit(page)
                    )
                ).all()
            for number, data in rows:
                yield number, data
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def purge_logs(self, finished_before: float) -> int:
        """Delete the logs of builds that finished before a time; return how many events."""
        old = select(BuildRecord.id).where(BuildRecord.finished < finished_before)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(BuildLogEvent).where(BuildLogEvent.build_id.in_(old))
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def image_usage(self, prefix: str) -> dict[str, tuple[float, bool]]:
        """For each image named ``prefix...`` in the records: when a build of it was last
        asked for or ended (seconds since the epoch), and whether one is unfinished."""
        unfinished = func.sum(case((BuildRecord.state.in_(UNFINISHED_STATES), 1), else_=0))
        query = (
            select(
                BuildRecord.image_name,
                func.max(BuildRecord.created),
                func.max(BuildRecord.finished),
                unfinished,
            )
            .where(BuildRecord.image_name.startswith(prefix, autoescape=True))
            .group_by(BuildRecord.image_name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            name: (max(created or 0.0, finished or 0.0), bool(running))
            for name, created, finished, running in rows
        }

    async def save_image(self, values: dict[str, Any]) -> SavedImage:
        values = clean_value(values)
        async with self.engine.begin() as conn:
            await conn.execute(insert(SavedImage).values(**values))
        image = await self.get_image(values["owner"], values["name"])
        assert image is not None
        return image

    async def get_image(self, owner: str, name: str) -> SavedImage | None:
        query = select(SavedImage).where(SavedImage.owner == owner, SavedImage.name == name)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return self._image(row)

    async def list_images(self, owner: str | None = None) -> list[SavedImage]:
        """Saved images of ``owner`` (None: everyone's), by owner and name."""
        query = select(SavedImage)
        if owner is not None:
            query = query.where(SavedImage.owner == owner)
        query = query.order_by(SavedImage.owner, SavedImage.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [i for i in map(self._image, rows) if i is not None]

    async def list_shared_images(self, user: str) -> list[SavedImage]:
        """``user``'s own saved images and every image shared with groups or everyone,
        by owner and name. Which shared images ``user`` may see is for
        :func:`binderhub_service.image_access.may_use` to say."""
        query = (
            select(SavedImage)
            .where(
                or_(
                    SavedImage.owner == user,
                    SavedImage.visibility.in_((Visibility.GROUPS, Visibility.PUBLIC)),
                )
            )
            .order_by(SavedImage.owner, SavedImage.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [i for i in map(self._image, rows) if i is not None]

    async def update_image(
        self, owner: str, name: str, values: dict[str, Any]
    ) -> SavedImage | None:
        """Change fields of a saved image; the changed image, or None when there is none."""
        values = clean_value(values)
        query = update(SavedImage).where(SavedImage.owner == owner, SavedImage.name == name)
        async with self.engine.begin() as conn:
            result = await conn.execute(query.values(**values))
        if not getattr(result, "rowcount", 0):
            return None
        return await self.get_image(owner, name)

    async def record_use(self, owner: str, name: str, when: float) -> SavedImage | None:
        """Count one server started with a saved image, at ``when`` (seconds since the
        epoch); the updated image, or None when there is none."""
        query = (
            update(SavedImage)
            .where(SavedImage.owner == owner, SavedImage.name == name)
            .values(use_count=SavedImage.use_count + 1, last_used=when)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(query)
        if not getattr(result, "rowcount", 0):
            return None
        return await self.get_image(owner, name)

    async def delete_image(self, owner: str, name: str) -> bool:
        query = delete(SavedImage).where(SavedImage.owner == owner, SavedImage.name == name)
        async with self.engine.begin() as conn:
            result = await conn.execute(query)
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def _visible(user: str) -> Any:
        return exists().where(
            BuildRequester.build_id == BuildRecord.id, BuildRequester.user == user
        )

    @staticmethod
    def _record(row: Any) -> BuildRecord | None:
        return None if row is None else BuildRecord(**row._asdict())

    @staticmethod
    def _image(row: Any) -> SavedImage | None:
        return None if row is None else SavedImage(**row._asdict())
