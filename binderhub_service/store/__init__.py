"""Persistence: build records, their complete logs and saved images (SQLAlchemy, Alembic)."""

from .recorder import BuildRecorder
from .store import BuildFilter, Store

__all__ = ["BuildFilter", "BuildRecorder", "Store"]
