"""The states of a build, one definition for the build manager, the store and the API."""

from __future__ import annotations

import enum


class BuildState(enum.StrEnum):
    """Where a build is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED)


UNFINISHED_STATES = tuple(state.value for state in BuildState if not state.is_final)
