"""Who may see and use a saved image: the one rule every route asks (pure, no I/O).

A saved image is ``private`` (its owner only), shared with hub ``groups``
(members of any of the groups it names) or ``public`` (every user of the
service). Its owner and the service's admins always may. Seeing an image and
using it (starting a server with it) are the same permission; changing or
deleting it is the owner's and the admins' alone.

A route asks ``may_use(viewer_of(handler.identity), image)``. A request made
on a user's behalf (``on_behalf_of``) does not carry the user's groups: take
them from ``ServiceAuth.groups_of(identity)`` first.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol, TypeVar


class Visibility(enum.StrEnum):
    """Who besides its owner may see and use a saved image."""

    PRIVATE = "private"
    GROUPS = "groups"
    PUBLIC = "public"


class Access(enum.StrEnum):
    """Why a viewer may see a saved image, as the API marks it."""

    OWN = "own"
    GROUP = "group"
    PUBLIC = "public"
    ADMIN = "admin"


class SharedImage(Protocol):
    """What the rule reads of a saved image."""

    owner: str
    visibility: str
    groups: list[str]


ImageT = TypeVar("ImageT", bound=SharedImage)


@dataclass(frozen=True)
class Viewer:
    """A user asking for saved images: their name, hub groups and whether they are admin."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False


class Asker(Protocol):
    """What :func:`viewer_of` reads of a request's identity (an ``auth.Identity``)."""

    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> frozenset[str]: ...

    @property
    def is_admin(self) -> bool: ...


def viewer_of(identity: Asker) -> Viewer:
    """The viewer a request's identity is: ``may_use(viewer_of(handler.identity), image)``."""
    return Viewer(identity.name, frozenset(identity.groups), identity.is_admin)


def access(viewer: Viewer, image: SharedImage) -> Access | None:
    """Why ``viewer`` may see and use ``image``, or None when they may not."""
    if image.owner == viewer.name:
        return Access.OWN
    if image.visibility == Visibility.PUBLIC:
        return Access.PUBLIC
    if image.visibility == Visibility.GROUPS and viewer.groups.intersection(image.groups or ()):
        return Access.GROUP
    if viewer.is_admin:
        return Access.ADMIN
    return None


def may_use(viewer: Viewer, image: SharedImage) -> bool:
    """Whether ``viewer`` may see ``image`` and start a server with it."""
    return access(viewer, image) is not None


def may_change(viewer: Viewer, image: SharedImage) -> bool:
    """Whether ``viewer`` may change the visibility or description of ``image``, or delete it."""
    return viewer.is_admin or image.owner == viewer.name


def visible(viewer: Viewer, images: Collection[ImageT]) -> list[ImageT]:
    """The images of ``images`` that ``viewer`` may see, in their order."""
    return [image for image in images if may_use(viewer, image)]
