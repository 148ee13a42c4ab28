"""The OpenAPI 3.1 document of REST API v1, as served at ``api/v1/openapi.json``."""

from __future__ import annotations

import copy
from typing import Any

from .. import __version__
from .api_input import BUILD_STATES, DEFAULT_PAGE, FAILURE_CLASSES, MAX_PAGE

_TIME = {"type": ["string", "null"], "format": "date-time"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_BUILD_ID = {
    "name": "build_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The build's id.",
}
_IMAGE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The saved image's name.",
}
_OWNER = {
    "name": "owner",
    "in": "query",
    "schema": {"type": "string"},
    "description": (
        "Whose image (default: the caller's). Another user's image is found only when it "
        "is shared with the caller (or the caller is an admin)."
    ),
}
_SHARING_PROPERTIES: dict[str, Any] = {
    "visibility": {
        "type": "string",
        "enum": ["private", "groups", "public"],
        "description": (
            "Who besides its owner may see and use it: nobody (`private`, the default), "
            "members of `groups`, or every user of the service (`public`)."
        ),
    },
    "groups": {
        "type": "array",
        "maxItems": 100,
        "items": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "Hub groups it is shared with; only with the visibility `groups`.",
    },
}

_CANCEL = {
    "summary": "Cancel a queued or running build",
    "description": (
        "The executor stops the build; its state becomes `cancelled` and its event stream "
        "ends with a `failed` event saying it was cancelled. Only the user who started the "
        "build (or an admin) may cancel it. Answers the final record."
    ),
    "parameters": [_BUILD_ID],
    "responses": {
        "200": _json("The cancelled build.", "Build"),
        "403": _error("The build was started by another user."),
        "404": _error("No such build visible to the caller."),
        "409": _error("The build has already ended."),
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "binderhub-service REST API",
        "version": "1",
        "description": (
            "Build records, build logs, cancellation and saved images. Users see the builds "
            "they started or joined, and the saved images that are theirs or shared with "
            "them; admins see all. Records that the caller may not see are answered 404."
        ),
    },
    "security": [{"hubToken": []}],
    "paths": {
        "/builds": {
            "get": {
                "summary": "List build records, newest first",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(BUILD_STATES)},
                        "description": "Only builds in this state (repeat for several).",
                    },
                    {
                        "name": "user",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only builds started by this user.",
                    },
                    {
                        "name": "repository",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only builds of this repository URL.",
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                        "description": "Only builds created at or after this time (ISO 8601).",
                    },
                    {
                        "name": "failure_class",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(FAILURE_CLASSES)},
                        "description": (
                            "Only builds that failed (or were cancelled) for this reason "
                            "(repeat for several)."
                        ),
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE,
                            "default": DEFAULT_PAGE,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "description": "The `next` value of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json("One page of records.", "BuildPage"),
                    "400": _error("An invalid query argument."),
                },
            },
            "post": {
                "summary": "Ask for an image of a repository at a ref",
                "description": (
                    "Resolves the ref. When a build of the same image is queued or running, "
                    "the caller joins it (202, that build's record). When the image already "
                    "exists, answers 200 with the newest succeeded record of it that the "
                    "caller may see, or else a new record in state `succeeded` whose log is "
                    "one `ready` event (no build ran). Otherwise starts a build (202)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/BuildRequest"}
                        }
                    },
                },
                "responses": {
                    "200": _json("The image exists.", "Build"),
                    "202": _json("A build was started or joined.", "Build"),
                    "400": _error("An invalid body, provider, spec or ref."),
                    "404": _error("The ref does not exist in the repository."),
                    "503": _error("The repository host could not be reached."),
                },
            },
        },
        "/builds/{build_id}": {
            "get": {
                "summary": "One build record",
                "parameters": [_BUILD_ID],
                "responses": {
                    "200": _json("The build.", "Build"),
                    "404": _error("No such build visible to the caller."),
                },
            },
            "delete": {**_CANCEL, "summary": "Cancel a build (same as POST .../cancel)"},
        },
        "/builds/{build_id}/cancel": {"post": _CANCEL},
        "/builds/{build_id}/events": {
            "get": {
                "summary": "The build's log as Server-Sent Events",
                "description": (
                    "Each event has `id: N` (1-based) and `data:` the JSON of a BinderHub "
                    "build event. With `Last-Event-ID: N` the stream resumes after event N. "
                    "A running build streams live until its `ready` or `failed` event; a "
                    "finished one replays its stored log and the stream closes."
                ),
                "parameters": [
                    _BUILD_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "The id of the last event received.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "404": _error("No such build visible to the caller."),
                },
            }
        },
        "/images": {
            "get": {
                "summary": "The saved images the caller may use (an admin's: everyone's)",
                "description": (
                    "The caller's own images, those shared with one of their hub groups, "
                    "and public ones; `access` marks which."
                ),
                "responses": {"200": _json("Saved images.", "ImageList")},
            },
            "post": {
                "summary": "Save an image under a name",
                "description": (
                    "The image must exist in the service's registry (without one, in its "
                    "container engine). Images on other registries are refused unless the "
                    "operator allows them (`c.SavedImages.allow_other_registries`)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ImageRequest"}
                        }
                    },
                },
                "responses": {
                    "201": _json("The saved image.", "Image"),
                    "400": _error(
                        "An invalid body, a build that did not succeed, an image that does "
                        "not exist, or one on another registry."
                    ),
                    "409": _error("The caller already has an image with this name."),
                    "503": _error("The registry could not be asked."),
                },
            },
        },
        "/images/{name}": {
            "get": {
                "summary": "One saved image",
                "parameters": [_IMAGE_NAME, _OWNER],
                "responses": {
                    "200": _json("The saved image.", "Image"),
                    "404": _error("No such saved image."),
                },
            },
            "patch": {
                "summary": "Change who may use a saved image, or its description",
                "description": "Its owner and admins only.",
                "parameters": [_IMAGE_NAME, _OWNER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ImageChange"}}
                    },
                },
                "responses": {
                    "200": _json("The changed image.", "Image"),
                    "400": _error("An invalid change; nothing was changed."),
                    "403": _error("The caller may use the image but is not its owner."),
                    "404": _error("No such saved image visible to the caller."),
                },
            },
            "delete": {
                "summary": "Forget a saved image (the image itself stays in the registry)",
                "description": "Its owner and admins only.",
                "parameters": [_IMAGE_NAME, _OWNER],
                "responses": {
                    "204": {"description": "Deleted."},
                    "403": _error("The caller may use the image but is not its owner."),
                    "404": _error("No such saved image."),
                },
            },
        },
        "/images/{name}/uses": {
            "post": {
                "summary": "Count one server started with a saved image",
                "description": (
                    "Adds one to `use_count` and sets `last_used`. Sent by the spawner "
                    "helpers on behalf of the user whose server starts; the caller must be "
                    "allowed to use the image."
                ),
                "parameters": [_IMAGE_NAME, _OWNER],
                "responses": {
                    "200": _json("The image, counted.", "Image"),
                    "404": _error("No such saved image visible to the caller."),
                },
            },
        },
        "/gc": {
            "post": {
                "summary": "Run registry garbage collection (admins only)",
                "description": (
                    "Deletes images under the service's image prefix that nobody uses "
                    "(see c.GarbageCollector), keeping those of the hub's running servers, "
                    "and forgets them in the found-image cache."
                ),
                "parameters": [
                    {
                        "name": "dry_run",
                        "in": "query",
                        "required": False,
                        "description": "`true` decides and deletes nothing.",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "responses": {
                    "200": _json("What was kept and deleted, and why.", "GcReport"),
                    "400": _error("dry_run is neither true nor false."),
                    "403": _error("The caller is not an admin."),
                    "409": _error("No registry is configured, or a run is under way."),
                    "502": _error(
                        "The registry refused deletes or answered badly, or the hub could "
                        "not say which images running servers use; nothing was deleted."
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "hubToken": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": (
                    "A JupyterHub API token, sent as `Authorization: token <token>` (or "
                    "`Bearer <token>`). It needs `access:services!service=<service name>`; "
                    "building needs the build scope (`custom:binderhub-service:build`), "
                    "seeing everyone's records the admin scope. Browsers logged in through "
                    "the hub send the service's login cookie instead, with the `_xsrf` "
                    "value as `X-XSRFToken`. Without authentication (`auth_enabled = "
                    "False`) no token is needed."
                ),
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": ["string", "null"]},
                },
            },
            "BuildRequest": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["provider", "spec"],
                        "additionalProperties": False,
                        "properties": {
                            "provider": {"type": "string", "minLength": 1, "examples": ["gh"]},
                            "spec": {
                                "type": "string",
                                "minLength": 1,
                                "examples": ["org/repo/main"],
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["repo_url"],
                        "additionalProperties": False,
                        "properties": {
                            "repo_url": {"type": "string", "minLength": 1},
                            "ref": {"type": "string", "minLength": 1, "default": "HEAD"},
                        },
                    },
                ]
            },
            "Build": {
                "type": "object",
                "required": ["id", "requester", "state", "image_name", "created"],
                "properties": {
                    "id": {"type": "string"},
                    "requester": {
                        "type": ["string", "null"],
                        "description": "Who started the build; null for users who joined it.",
                    },
                    "provider": {"type": "string"},
                    "spec": {"type": "string"},
                    "repo_url": {"type": "string"},
                    "ref": {"type": "string", "description": "The resolved ref (a commit)."},
                    "image_name": {"type": "string"},
                    "state": {"type": "string", "enum": list(BUILD_STATES)},
                    "created": {"type": "string", "format": "date-time"},
                    "started": _TIME,
                    "finished": _TIME,
                    "queue_wait_seconds": {"type": ["number", "null"]},
                    "duration_seconds": {"type": ["number", "null"]},
                    "phase_times": {
                        "type": "object",
                        "description": "When each phase was first reported.",
                        "additionalProperties": _TIME,
                    },
                    "failure_reason": {"type": ["string", "null"]},
                    "failure_class": {
                        "type": ["string", "null"],
                        "enum": [*FAILURE_CLASSES, None],
                        "description": (
                            "Why the build failed or was cancelled; null for the others."
                        ),
                    },
                    "executor": {"type": "string"},
                    "repo2docker_version": {"type": "string"},
                },
            },
            "BuildPage": {
                "type": "object",
                "required": ["builds", "next"],
                "properties": {
                    "builds": {"type": "array", "items": {"$ref": "#/components/schemas/Build"}},
                    "next": {
                        "type": ["string", "null"],
                        "description": "Cursor of the next page; null on the last page.",
                    },
                },
            },
            "ImageRequest": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"},
                    "image": {"type": "string", "minLength": 1, "maxLength": 512},
                    "build_id": {"type": "string", "minLength": 1},
                    "description": {"type": "string", "maxLength": 4096},
                    **_SHARING_PROPERTIES,
                },
                "anyOf": [{"required": ["image"]}, {"required": ["build_id"]}],
            },
            "ImageChange": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": False,
                "properties": {
                    **_SHARING_PROPERTIES,
                    "description": {"type": "string", "maxLength": 4096},
                },
            },
            "Image": {
                "type": "object",
                "required": ["name", "owner", "image", "created"],
                "properties": {
                    "name": {"type": "string"},
                    "owner": {"type": "string"},
                    "description": {"type": "string"},
                    "image": {"type": "string"},
                    "build_id": {"type": ["string", "null"]},
                    "created": {"type": "string", "format": "date-time"},
                    "visibility": _SHARING_PROPERTIES["visibility"],
                    "groups": {
                        "type": ["array", "null"],
                        "items": {"type": "string"},
                        "description": "The groups it is shared with (to its owner and admins).",
                    },
                    "access": {
                        "type": ["string", "null"],
                        "enum": ["own", "group", "public", "admin", None],
                        "description": (
                            "Why the caller sees it: their own, shared with a group of "
                            "theirs, public, or as an admin."
                        ),
                    },
                    "use_count": {
                        "type": "integer",
                        "description": "Servers started with it (launches and spawns).",
                    },
                    "last_used": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "GcDecision": {
                "type": "object",
                "required": ["image", "reason"],
                "properties": {"image": {"type": "string"}, "reason": {"type": "string"}},
            },
            "GcReport": {
                "type": "object",
                "required": ["delete", "keep", "dry_run", "deleted", "deleted_bytes"],
                "properties": {
                    "delete": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/GcDecision"},
                    },
                    "keep": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/GcDecision"},
                    },
                    "dry_run": {"type": "boolean"},
                    "deleted": {"type": "integer"},
                    "deleted_bytes": {"type": "integer"},
                },
            },
            "ImageList": {
                "type": "object",
                "required": ["images"],
                "properties": {
                    "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}}
                },
            },
        },
    },
}


def openapi_document(api_url: str) -> dict[str, Any]:
    """The document, with the API's URL path (e.g. ``/services/binder/api/v1``) as server."""
    document = copy.deepcopy(_DOCUMENT)
    document["info"]["x-service-version"] = __version__
    document["servers"] = [{"url": api_url}]
    return document
