"""Build events and their wire form.

A build produces an ordered list of :class:`BuildEvent`. On the wire each one is
a Server-Sent Event whose ``data`` is the JSON object BinderHub sends:
``phase``, ``message`` (always ending in a newline), ``imageName`` where an
image is named, and ``status_code`` on errors. A ``failed`` event also has
``failure_class`` (see :mod:`binderhub_service.failures`) and ``hint``, what to
do about it: fields BinderHub's clients ignore.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.StrEnum):
    """The phases a build stream can report, in BinderHub's spelling."""

    WAITING = "waiting"
    FETCHING = "fetching"
    BUILDING = "building"
    PUSHING = "pushing"
    BUILT = "built"
    LAUNCHING = "launching"
    READY = "ready"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in (Phase.READY, Phase.FAILED)

    @property
    def service_only(self) -> bool:
        """Phases only this service reports, never a builder's log line."""
        return self.is_final or self is Phase.LAUNCHING


@dataclass(frozen=True)
class BuildEvent:
    """One event of a build's stream.

    ``phase`` is ``None`` for repo2docker lines that carry no phase: they are
    relayed as they came. ``extra`` holds further JSON fields (such as the queue
    position of a ``waiting`` event). ``log_position`` is where the line the
    event came from is in its executor's own log (a build pod's), stored with
    the event so that a build followed again after a restart resumes that log
    after it; it is never part of the wire form.
    """

    phase: Phase | None
    message: str
    image_name: str | None = None
    status_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    log_position: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.message.endswith("\n"):
            object.__setattr__(self, "message", self.message + "\n")

    @property
    def is_final(self) -> bool:
        return self.phase is not None and self.phase.is_final

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.phase is not None:
            data["phase"] = self.phase.value
        data["message"] = self.message
        if self.image_name is not None:
            data["imageName"] = self.image_name
        if self.status_code is not None:
            data["status_code"] = self.status_code
        data.update(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildEvent:
        """Rebuild an event from its wire form (the inverse of :meth:`to_dict`)."""
        data = dict(data)
        phase = data.pop("phase", None)
        return cls(
            phase=Phase(phase) if phase is not None else None,
            message=data.pop("message", ""),
            image_name=data.pop("imageName", None),
            status_code=data.pop("status_code", None),
            extra=data,
        )


def sse_frame(event_id: int, event: BuildEvent) -> bytes:
    """Serialise one event as a Server-Sent Events frame with its id."""
    return json_frame(event_id, event.to_json())


def json_frame(event_id: int, data: str) -> bytes:
    """A Server-Sent Events frame for an event already in its JSON wire form."""
    return f"id: {event_id}\ndata: {data}\n\n".encode()


KEEPALIVE_FRAME = b":keepalive\n\n"


def failed(
    message: str,
    status_code: int | None = None,
    failure_class: str | None = None,
    hint: str | None = None,
) -> BuildEvent:
    """The event that ends a failed build; with its class and hint when they are known."""
    extra = {}
    if failure_class is not None:
        extra["failure_class"] = failure_class
    if hint is not None:
        extra["hint"] = hint
    return BuildEvent(Phase.FAILED, message, status_code=status_code, extra=extra)


def ready(image_name: str, message: str) -> BuildEvent:
    return BuildEvent(Phase.READY, message, image_name=image_name)
