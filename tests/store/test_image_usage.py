"""The build records garbage collection reads: last use and unfinished builds per image."""

from __future__ import annotations

from binderhub_service.store import Store
from tests.store.test_store import build_row


async def test_image_usage_per_image_under_a_prefix(store: Store) -> None:
    await store.write(
        new_builds=[
            build_row("a1", image_name="r/binder-a:1", state="success", finished=2000.0),
            build_row("a2", image_name="r/binder-a:1", state="failure", created=1500.0),
            build_row("b1", image_name="r/binder-b:1", state="running", created=3000.0),
            build_row("c1", image_name="r/binder_c:1", state="success", finished=4000.0),
            build_row("o1", image_name="r/other:1", state="running"),
        ]
    )
    assert await store.image_usage("r/binder-") == {
        "r/binder-a:1": (2000.0, False),
        "r/binder-b:1": (3000.0, True),
    }
    assert await store.image_usage("r/binder_") == {"r/binder_c:1": (4000.0, False)}
