"""Write docs/source/reference/rest-api.md from the service's OpenAPI document.

Run from the repository root: ``python docs/generate_api_reference.py``.
The page lists every operation, then holds the whole document (as served at
``api/v1/openapi.json``) for tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from binderhub_service.handlers.openapi import openapi_document

TARGET = Path(__file__).parent / "source" / "reference" / "rest-api.md"
SERVER = "/services/binder/api/v1"
METHODS = ("get", "post", "put", "patch", "delete")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", _cell(operation["summary"]) + ".", ""]
    if operation.get("description"):
        lines += [_cell(operation["description"]), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | description |", "| --- | --- | --- |"]
        for parameter in parameters:
            description = _cell(parameter.get("description", ""))
            lines.append(f"| `{parameter['name']}` | {parameter['in']} | {description} |")
        lines.append("")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        schema = body["schema"]["$ref"].rsplit("/", 1)[1]
        lines += [f"Request body: JSON, schema `{schema}`.", ""]
    lines += ["| status | meaning |", "| --- | --- |"]
    for status, response in operation["responses"].items():
        lines.append(f"| {status} | {_cell(response['description'])} |")
    return [*lines, ""]


def render() -> str:
    document = openapi_document(SERVER)
    scheme = document["components"]["securitySchemes"]["hubToken"]
    lines = [
        "# REST API reference",
        "",
        _cell(document["info"]["description"]),
        "",
        f"Every path below is relative to `{{base_url}}api/v1`, e.g. `{SERVER}` for a",
        "service named `binder` behind a hub. The service serves this description at",
        "`api/v1/openapi.json`. [The REST API walk-through](../howto/rest-api.md) shows",
        "it with curl. Generated from the code by `docs/generate_api_reference.py`.",
        "",
        "## Authentication",
        "",
        _cell(scheme["description"]),
        "",
        "## Operations",
        "",
    ]
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(method, path, item[method])
    lines += [
        "## The OpenAPI document",
        "",
        "```json",
        json.dumps(document, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
