"""Validation of REST API request bodies and query arguments (pure, no I/O).

Each function returns clean values or raises :class:`InvalidInput` with a
reason the client can act on.
"""

from __future__ import annotations

import datetime
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import ServiceError
from ..failures import FailureClass
from ..image_access import Visibility
from ..states import BuildState

BUILD_STATES = tuple(state.value for state in BuildState)
FAILURE_CLASSES = tuple(failure_class.value for failure_class in FailureClass)
MAX_PAGE = 200
DEFAULT_PAGE = 50
IMAGE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
BUILD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# An image reference: [host[:port]/]path[:tag][@digest], in the characters OCI allows.
IMAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
# A hub user name: anything printable, at most 255 characters.
IMAGE_OWNER_PATTERN = re.compile(r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,255}$")
MAX_DESCRIPTION = 4096
VISIBILITIES = tuple(v.value for v in Visibility)
# A hub group name: printable, at most 255 characters.
GROUP_PATTERN = IMAGE_OWNER_PATTERN
MAX_GROUPS = 100
MAX_IMAGE = 512
MAX_ARGUMENT = 1024
# Control characters other than tab and newline (and lone surrogates), never accepted.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidInput(ServiceError):
    """A request body or query argument the API cannot accept."""

    status_code = 400


def json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object."""
    try:
        data = json.loads(body or b"null")
    except ValueError as e:
        raise InvalidInput(f"The request body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidInput("The request body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return data


def _string(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key!r} must be a non-empty string.")
    if _CONTROL.search(value):
        raise InvalidInput(f"{key!r} must not contain control characters.")
    return value


def text_argument(name: str, value: str | None) -> str | None:
    """A free-text query argument: at most ``MAX_ARGUMENT`` characters, no control characters."""
    if value is not None and (len(value) > MAX_ARGUMENT or _CONTROL.search(value)):
        raise InvalidInput(
            f"{name!r} must be at most {MAX_ARGUMENT} characters, without control characters."
        )
    return value


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(map(repr, unknown))}.")


def build_request(data: dict[str, Any]) -> tuple[str, str]:
    """(provider, spec) from ``{"provider", "spec"}`` or ``{"repo_url", "ref"}``.

    A ``repo_url`` becomes a ``git`` spec; its ``ref`` defaults to ``HEAD``.
    """
    if "repo_url" in data:
        _only(data, {"repo_url", "ref"})
        url = _string(data, "repo_url")
        ref = _string(data, "ref", required=False) or "HEAD"
        assert url is not None
        return "git", urllib.parse.quote(url, safe="") + "/" + urllib.parse.quote(ref, safe="")
    _only(data, {"provider", "spec"})
    if "provider" not in data or "spec" not in data:
        raise InvalidInput('Send {"provider": ..., "spec": ...} or {"repo_url": ..., "ref": ...}.')
    provider, spec = _string(data, "provider"), _string(data, "spec")
    assert provider is not None and spec is not None
    return provider, spec


@dataclass(frozen=True)
class ImageRequest:
    """A validated request to save an image under a name."""

    name: str
    image: str | None
    build_id: str | None
    description: str
    visibility: str = Visibility.PRIVATE
    groups: tuple[str, ...] = ()


def image_request(data: dict[str, Any]) -> ImageRequest:
    _only(data, {"name", "image", "build_id", "description", "visibility", "groups"})
    name = _string(data, "name")
    assert name is not None
    if not IMAGE_NAME_PATTERN.match(name):
        raise InvalidInput(
            "'name' must start with a letter or digit and hold only letters, digits, "
            "'.', '_' and '-' (at most 255 characters)."
        )
    image = _string(data, "image", required=False)
    if image is not None and (len(image) > MAX_IMAGE or not IMAGE_PATTERN.match(image)):
        raise InvalidInput(
            f"'image' must be an image reference (letters, digits and '._/:@+-', starting "
            f"with a letter or digit), at most {MAX_IMAGE} characters."
        )
    build_id = _string(data, "build_id", required=False)
    if build_id is not None and not BUILD_ID_PATTERN.match(build_id):
        raise InvalidInput("'build_id' must be the id of a build.")
    if image is None and build_id is None:
        raise InvalidInput("Send 'image', 'build_id' or both.")
    description = _description(data.get("description", ""))
    sharing: dict[str, Any] = {k: data[k] for k in ("visibility", "groups") if k in data}
    change = image_update(sharing) if sharing else ImageUpdate()
    visibility, groups = change.sharing(Visibility.PRIVATE, [])
    return ImageRequest(name, image, build_id, description, visibility, groups)


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or _CONTROL.search(value):
        raise InvalidInput(
            f"'description' must be a string of at most {MAX_DESCRIPTION} characters, "
            "without control characters other than tab and newline."
        )
    return value


@dataclass(frozen=True)
class ImageUpdate:
    """A validated change to a saved image: each field None when it stays as it is."""

    visibility: str | None = None
    groups: tuple[str, ...] | None = None
    description: str | None = None

    def sharing(self, visibility: str, groups: list[str]) -> tuple[str, tuple[str, ...]]:
        """The visibility and groups after this change, from the current ones.

        Groups are kept only for ``groups`` visibility, which needs at least one.
        """
        new_visibility = self.visibility or visibility
        if new_visibility != Visibility.GROUPS:
            if self.groups:
                raise InvalidInput("'groups' are only for the visibility 'groups'.")
            return new_visibility, ()
        new_groups = self.groups if self.groups is not None else tuple(groups)
        if not new_groups:
            raise InvalidInput("The visibility 'groups' needs 'groups': at least one hub group.")
        return new_visibility, new_groups

    def values(self, visibility: str, groups: list[str]) -> dict[str, Any]:
        """The columns to write, from the image's current visibility and groups."""
        new_visibility, new_groups = self.sharing(visibility, groups)
        values: dict[str, Any] = {"visibility": new_visibility, "groups": list(new_groups)}
        if self.description is not None:
            values["description"] = self.description
        return values


def image_update(data: dict[str, Any]) -> ImageUpdate:
    """A change to a saved image: ``visibility``, ``groups``, ``description``."""
    _only(data, {"visibility", "groups", "description"})
    if not data:
        raise InvalidInput("Send 'visibility', 'groups' or 'description'.")
    visibility = data.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        raise InvalidInput(f"'visibility' must be one of: {', '.join(VISIBILITIES)}.")
    groups = data.get("groups")
    if groups is not None:
        if (
            not isinstance(groups, list)
            or len(groups) > MAX_GROUPS
            or not all(isinstance(g, str) and GROUP_PATTERN.match(g) for g in groups)
        ):
            raise InvalidInput(
                f"'groups' must be a list of at most {MAX_GROUPS} hub group names (each "
                "1 to 255 printable characters)."
            )
        groups = tuple(dict.fromkeys(groups))
    description = data.get("description")
    if description is not None:
        description = _description(description)
    return ImageUpdate(visibility, groups, description)


def states(values: list[str]) -> list[str]:
    for value in values:
        if value not in BUILD_STATES:
            raise InvalidInput(f"'state' must be one of: {', '.join(BUILD_STATES)}.")
    return values


def failure_classes(values: list[str]) -> list[str]:
    for value in values:
        if value not in FAILURE_CLASSES:
            raise InvalidInput(f"'failure_class' must be one of: {', '.join(FAILURE_CLASSES)}.")
    return values


def since(value: str | None) -> float | None:
    """An ISO 8601 time (UTC when it has no offset) as seconds since the epoch."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise InvalidInput("'since' must be an ISO 8601 date or time.") from None


def limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidInput(f"'limit' must be a whole number from 1 to {MAX_PAGE}.")
    return int(value)


def cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput("'cursor' must be the 'next' value of a previous page.")
    return int(value)
