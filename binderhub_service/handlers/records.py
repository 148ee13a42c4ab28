"""Build and image records in the REST API's JSON form."""

from __future__ import annotations

import datetime
from typing import Any

from ..image_access import Access
from ..store.models import BuildRecord, SavedImage


def isotime(timestamp: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC time, e.g. ``2025-01-31T12:00:00.5Z``."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def build_json(record: BuildRecord, viewer: str | None = None) -> dict[str, Any]:
    """A build record as the API shows it to ``viewer`` (None: an admin).

    Who started a build is shown to its starter and to admins only, not to
    users who joined it.
    """
    return {
        "id": record.id,
        "requester": record.requester if viewer is None or viewer == record.requester else None,
        "provider": record.provider,
        "spec": record.spec,
        "repo_url": record.repo_url,
        "ref": record.ref,
        "image_name": record.image_name,
        "state": record.state,
        "created": isotime(record.created),
        "started": isotime(record.started),
        "finished": isotime(record.finished),
        "queue_wait_seconds": record.queue_wait,
        "duration_seconds": record.duration,
        "phase_times": {phase: isotime(t) for phase, t in (record.phase_times or {}).items()},
        "failure_reason": record.failure_reason,
        "failure_class": record.failure_class,
        "executor": record.executor,
        "repo2docker_version": record.builder_version,
    }


def image_json(
    image: SavedImage, access: Access | None = None, show_groups: bool = True
) -> dict[str, Any]:
    """A saved image as the API shows it to a viewer with ``access`` to it.

    ``access`` marks why the viewer sees it (``own``, ``group``, ``public`` or
    ``admin``); the groups it is shared with are shown when ``show_groups``
    (to its owner and admins).
    """
    return {
        "name": image.name,
        "owner": image.owner,
        "description": image.description,
        "image": image.image,
        "build_id": image.build_id,
        "created": isotime(image.created),
        "visibility": image.visibility,
        "groups": list(image.groups or ()) if show_groups else None,
        "access": access.value if access else None,
        "use_count": image.use_count or 0,
        "last_used": isotime(image.last_used),
    }
