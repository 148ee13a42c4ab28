"""The tables: build records, their event logs, and saved images.

Times are seconds since the epoch (UTC) as floats, the same on SQLite and
PostgreSQL; the API turns them into ISO 8601 strings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of every table."""


class BuildRecord(Base):
    """One build: what was asked, by whom, how it went.

    ``seq`` orders records by creation and serves as the pagination cursor;
    ``id`` is the build's public identifier.
    """

    __tablename__ = "builds"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    requester: Mapped[str] = mapped_column(String(255), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(255))
    repo_url: Mapped[str] = mapped_column(Text, index=True)
    image_name: Mapped[str] = mapped_column(String(512), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created: Mapped[float] = mapped_column(Float, index=True)
    started: Mapped[float | None] = mapped_column(Float)
    finished: Mapped[float | None] = mapped_column(Float)
    queue_wait: Mapped[float | None] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)
    phase_times: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Why a failed or cancelled build ended (a FailureClass value); None for the others.
    failure_class: Mapped[str | None] = mapped_column(String(32), index=True)
    executor: Mapped[str] = mapped_column(String(64))
    builder_version: Mapped[str] = mapped_column(String(64))


def build_row(
    *,
    id: str,
    requester: str,
    provider: str,
    spec: str,
    ref: str,
    repo_url: str,
    image_name: str,
    state: str,
    created: float,
    started: float | None,
    finished: float | None,
    phase_times: dict[str, float],
    failure_reason: str | None,
    executor: str,
    builder_version: str,
    failure_class: str | None = None,
) -> dict[str, Any]:
    """The column values of one :class:`BuildRecord`; the waiting and running times follow."""
    return {
        "id": id,
        "requester": requester,
        "provider": provider,
        "spec": spec,
        "ref": ref,
        "repo_url": repo_url,
        "image_name": image_name,
        "state": state,
        "created": created,
        "started": started,
        "finished": finished,
        "queue_wait": started - created if started is not None else None,
        "duration": finished - started if finished is not None and started is not None else None,
        "phase_times": phase_times,
        "failure_reason": failure_reason,
        "failure_class": failure_class,
        "executor": executor,
        "builder_version": builder_version,
    }


class BuildLogEvent(Base):
    """One event of a build's log, numbered from 1 as on the wire, with its JSON.

    ``log_position`` is where the line the event came from is in its
    executor's own log (a build pod's), if it came from one: a build followed
    again after a restart resumes that log after the last stored position.
    """

    __tablename__ = "build_events"

    build_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    log_position: Mapped[str | None] = mapped_column(String(64), nullable=True)


class BuildRequester(Base):
    """A user who asked for a build: its starter, or one who joined it while it ran."""

    __tablename__ = "build_requesters"

    build_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_build_requesters_user", "user"),)


class SavedImage(Base):
    """An image a user saved under a name of their own, e.g. for a profile list.

    ``visibility`` says who else may see and use it: ``private`` (the owner
    only), ``groups`` (members of the hub groups in ``groups``) or ``public``
    (every user of the service). ``use_count`` and ``last_used`` count the
    servers started with it.
    """

    __tablename__ = "saved_images"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str] = mapped_column(String(512))
    build_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("builds.id", ondelete="SET NULL")
    )
    created: Mapped[float] = mapped_column(Float)
    visibility: Mapped[str] = mapped_column(String(16), default="private", index=True)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("owner", "name", name="uq_saved_images_owner_name"),)
