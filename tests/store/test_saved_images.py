"""Saved images in the store: sharing, changes, uses, and the migration that added them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import column, insert, table

from binderhub_service.store import Store

# The table as revision 0002 made it.
OLD_SAVED_IMAGES = table(
    "saved_images",
    *(column(c) for c in ("owner", "name", "description", "image", "build_id", "created")),
)


def image_row(owner: str, name: str, **values: Any) -> dict[str, Any]:
    row = {
        "owner": owner,
        "name": name,
        "description": "",
        "image": f"registry.example.org/binder-{name}:1",
        "build_id": None,
        "created": 1000.0,
    }
    row.update(values)
    return row


async def test_new_images_are_private_and_unused(store: Store) -> None:
    saved = await store.save_image(image_row("alice", "env"))
    assert (saved.visibility, saved.groups, saved.use_count, saved.last_used) == (
        "private",
        [],
        0,
        None,
    )


async def test_shared_listing_holds_own_and_shared_images(store: Store) -> None:
    await store.save_image(image_row("alice", "private"))
    await store.save_image(image_row("alice", "lab", visibility="groups", groups=["lab"]))
    await store.save_image(image_row("carol", "open", visibility="public"))
    await store.save_image(image_row("bob", "mine"))
    names = [(i.owner, i.name) for i in await store.list_shared_images("bob")]
    assert names == [("alice", "lab"), ("bob", "mine"), ("carol", "open")]


async def test_update_and_record_use(store: Store) -> None:
    await store.save_image(image_row("alice", "env"))
    changed = await store.update_image(
        "alice", "env", {"visibility": "groups", "groups": ["lab", "x"]}
    )
    assert changed is not None and changed.groups == ["lab", "x"]
    assert await store.update_image("alice", "none", {"visibility": "public"}) is None
    await store.record_use("alice", "env", 2000.0)
    used = await store.record_use("alice", "env", 3000.0)
    assert used is not None and (used.use_count, used.last_used) == (2, 3000.0)
    assert await store.record_use("bob", "env", 3000.0) is None


async def test_upgrade_keeps_saved_images_private(db_url: str) -> None:
    store = Store(db_url)
    await store.open(revision="0002")
    async with store.engine.begin() as conn:
        await conn.execute(insert(OLD_SAVED_IMAGES), [image_row("alice", "old")])
    await store.migrate("head")
    old = await store.get_image("alice", "old")
    assert old is not None
    assert (old.visibility, old.groups, old.use_count, old.last_used) == ("private", [], 0, None)
    await store.downgrade("0002")
    await store.migrate("head")
    assert await store.get_image("alice", "old") is not None
    await store.close()
