"""Persistence: build records, their complete logs and saved images (SQLAlchemy, Alembic)."""

from .recorder import BuildRecorder
from .records import ANONYMOUS
from .store import BuildFilter, Store

__all__ = ["ANONYMOUS", "BuildFilter", "BuildRecorder", "Store"]
