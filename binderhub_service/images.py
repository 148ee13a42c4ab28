"""Where the service looks for images that are already built."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from .singleflight import SingleFlight


class ImageLookup(Protocol):
    """Anything that can say whether an image exists (a registry, or the local engine)."""

    async def has_image(self, image_name: str) -> bool: ...


class FoundImageCache:
    """Remembers for a while which images were found, in front of another lookup.

    Built images are named by their commit, so an image that exists keeps
    existing unless an operator deletes it: a repeated request for a popular
    image is answered without asking the registry again. Only positive answers
    are kept (a missing image is always asked for again), at most
    ``max_entries`` of them, the oldest dropped first. Lookups of one image
    in flight at once share one call to ``lookup``.
    """

    def __init__(self, lookup: ImageLookup, seconds: float, max_entries: int = 10_000) -> None:
        self.lookup = lookup
        self.seconds = seconds
        self.max_entries = max_entries
        self._found: OrderedDict[str, float] = OrderedDict()
        self._lookups: SingleFlight[bool] = SingleFlight()

    async def has_image(self, image_name: str) -> bool:
        now = time.monotonic()
        expires = self._found.get(image_name)
        if expires is not None and expires > now:
            return True
        return await self._lookups.run(image_name, lambda: self._ask(image_name))

    async def _ask(self, image_name: str) -> bool:
        now = time.monotonic()
        found = await self.lookup.has_image(image_name)
        if found and self.seconds > 0:
            self._found[image_name] = now + self.seconds
            self._found.move_to_end(image_name)
            while len(self._found) > self.max_entries:
                self._found.popitem(last=False)
        else:
            self._found.pop(image_name, None)
        return found

    def forget(self, image_name: str) -> None:
        """Drop ``image_name`` (e.g. deleted from the registry): the next lookup asks again."""
        self._found.pop(image_name, None)
