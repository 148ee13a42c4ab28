import asyncio

from binderhub_service.images import FoundImageCache


class CountingLookup:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[str] = []

    async def has_image(self, image_name: str) -> bool:
        self.asked.append(image_name)
        return image_name in self.present


async def test_found_images_are_remembered_missing_ones_are_not():
    lookup = CountingLookup({"a:1"})
    cache = FoundImageCache(lookup, seconds=60)
    assert await cache.has_image("a:1")
    assert await cache.has_image("a:1")
    assert not await cache.has_image("b:1")
    assert not await cache.has_image("b:1")
    assert lookup.asked == ["a:1", "b:1", "b:1"]


async def test_expired_and_disabled_entries_ask_again(monkeypatch):
    lookup = CountingLookup({"a:1"})
    cache = FoundImageCache(lookup, seconds=0)
    await cache.has_image("a:1")
    await cache.has_image("a:1")
    assert lookup.asked == ["a:1", "a:1"]

    clock = [1000.0]
    monkeypatch.setattr("binderhub_service.images.time.monotonic", lambda: clock[0])
    cache = FoundImageCache(lookup, seconds=10)
    await cache.has_image("a:1")
    clock[0] += 11
    lookup.present.clear()
    assert not await cache.has_image("a:1")


async def test_the_cache_is_bounded():
    lookup = CountingLookup({f"img:{i}" for i in range(5)})
    cache = FoundImageCache(lookup, seconds=60, max_entries=3)
    for i in range(5):
        await cache.has_image(f"img:{i}")
    lookup.asked.clear()
    await cache.has_image("img:4")
    await cache.has_image("img:0")
    assert lookup.asked == ["img:0"]


async def test_lookups_of_one_image_in_flight_share_one_call():
    gate = asyncio.Event()

    class GatedLookup(CountingLookup):
        async def has_image(self, image_name: str) -> bool:
            self.asked.append(image_name)
            await gate.wait()
            return image_name in self.present

    lookup = GatedLookup({"a:1"})
    cache = FoundImageCache(lookup, seconds=0)
    waiting = [asyncio.ensure_future(cache.has_image(name)) for name in ["a:1"] * 50 + ["b:1"]]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [True] * 50 + [False]
    assert lookup.asked == ["a:1", "b:1"]
    # Landed: the next lookup asks again (seconds=0 remembers nothing).
    assert await cache.has_image("a:1") and lookup.asked == ["a:1", "b:1", "a:1"]
