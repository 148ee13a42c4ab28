"""Which images may be saved: those that exist where the service keeps its images.

An image in the service's registry (named with the host of ``DockerRegistry.url``
or of ``BinderHubService.image_prefix``) is looked up there; with no registry,
in the container engine builds run on. An image on any other registry is
refused, unless the operator allows such images
(``c.SavedImages.allow_other_registries``): the service then stores the
reference as given, unchecked, since it holds no credentials for other
registries.
"""

from __future__ import annotations

from traitlets import Bool
from traitlets.config import LoggingConfigurable

from .errors import ServiceError
from .images import ImageLookup
from .naming import split_image_name


class ImageNotSavable(ServiceError):
    """The image named in a request to save it does not exist or may not be saved here."""

    status_code = 400


class SavedImages(LoggingConfigurable):
    """The rule for what may be saved under a name, checked before anything is stored."""

    allow_other_registries = Bool(
        False,
        help="""Let users save images from registries other than the service's own (bring
        your own image, e.g. ``quay.io/jupyter/scipy-notebook:2024-07-01``). Such images are
        stored unchecked: the service cannot look into other registries. Default off: only
        images that exist in the service's registry (or, without a registry, in the local
        container engine) may be saved.""",
    ).tag(config=True)

    def __init__(
        self, lookup: ImageLookup, registry_hosts: frozenset[str] | None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.lookup = lookup
        self.registry_hosts = registry_hosts

    async def check(self, image: str) -> None:
        """Raise :class:`ImageNotSavable` unless ``image`` may be saved."""
        host = split_image_name(image)[0]
        own = self.registry_hosts
        if own is not None and host not in own:
            if self.allow_other_registries:
                return
            raise ImageNotSavable(
                f"Only images in this service's registry ({', '.join(sorted(own))}) may be "
                f"saved; {image!r} names another registry."
            )
        if await self.lookup.has_image(image):
            return
        if own is None and host is not None and self.allow_other_registries:
            return
        where = "the registry" if own else "the container engine"
        raise ImageNotSavable(
            f"There is no image {image!r} in {where}: build it first, or check its name and tag."
        )
