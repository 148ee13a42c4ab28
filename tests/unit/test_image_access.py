"""The one rule for who may see, use and change a saved image."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from binderhub_service.auth import Identity
from binderhub_service.image_access import (
    Access,
    Viewer,
    access,
    may_change,
    may_use,
    viewer_of,
    visible,
)


@dataclass
class Image:
    owner: str
    visibility: str = "private"
    groups: list[str] = field(default_factory=list)


ALICE = Viewer("alice")
BOB_IN_LAB = Viewer("bob", frozenset({"lab", "other"}))
CAROL = Viewer("carol", frozenset({"elsewhere"}))
ROOT = Viewer("root", is_admin=True)


@pytest.mark.parametrize(
    ("image", "viewer", "expected"),
    [
        (Image("alice"), ALICE, Access.OWN),
        (Image("alice"), BOB_IN_LAB, None),
        (Image("alice"), ROOT, Access.ADMIN),
        (Image("alice", "groups", ["lab"]), BOB_IN_LAB, Access.GROUP),
        (Image("alice", "groups", ["lab"]), CAROL, None),
        (Image("alice", "groups", ["lab"]), ALICE, Access.OWN),
        (Image("alice", "groups", []), BOB_IN_LAB, None),
        (Image("alice", "public"), CAROL, Access.PUBLIC),
        (Image("alice", "public"), ROOT, Access.PUBLIC),
        (Image("alice", "nonsense", ["lab"]), BOB_IN_LAB, None),
    ],
)
def test_access(image: Image, viewer: Viewer, expected: Access | None) -> None:
    assert access(viewer, image) == expected
    assert may_use(viewer, image) is (expected is not None)


def test_only_owners_and_admins_change_an_image() -> None:
    shared = Image("alice", "public")
    assert may_change(ALICE, shared) and may_change(ROOT, shared)
    assert not may_change(BOB_IN_LAB, shared) and not may_change(CAROL, shared)


def test_visible_keeps_order() -> None:
    images = [Image("alice", "groups", ["lab"]), Image("carol"), Image("dave", "public")]
    assert visible(BOB_IN_LAB, images) == [images[0], images[2]]
    assert visible(CAROL, images) == [images[1], images[2]]


def test_viewer_of_an_identity() -> None:
    identity = Identity("bob", "user", False, True, "user:bob", groups=frozenset({"lab"}))
    assert viewer_of(identity) == Viewer("bob", frozenset({"lab"}))
    assert may_use(viewer_of(identity), Image("alice", "groups", ["lab"]))
