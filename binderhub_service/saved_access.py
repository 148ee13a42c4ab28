"""Who may launch a saved image: the one rule, kept in one place."""

from __future__ import annotations

from .auth import Identity
from .store.models import SavedImage


def may_launch_saved(identity: Identity, image: SavedImage) -> bool:
    """Whether ``identity`` may launch ``image``: its owner, or an admin of this service."""
    return identity.is_admin or identity.name == image.owner
