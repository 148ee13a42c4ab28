"""Where the service looks for images that are already built."""

from __future__ import annotations

from typing import Protocol


class ImageLookup(Protocol):
    """Anything that can say whether an image exists (a registry, or the local engine)."""

    async def has_image(self, image_name: str) -> bool: ...
