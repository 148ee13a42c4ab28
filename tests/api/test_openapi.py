"""The OpenAPI document: valid, and true to the service (checked by schemathesis)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from binderhub_service.handlers.openapi import openapi_document


def test_document_is_valid_openapi_31() -> None:
    document = openapi_document("/services/binder/api/v1")
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "/services/binder/api/v1"}]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


ALL_OPERATIONS = {
    "GET /builds",
    "POST /builds",
    "GET /builds/{build_id}",
    "DELETE /builds/{build_id}",
    "POST /builds/{build_id}/cancel",
    "GET /builds/{build_id}/events",
    "GET /images",
    "POST /images",
    "GET /images/{name}",
    "PATCH /images/{name}",
    "DELETE /images/{name}",
    "POST /images/{name}/uses",
    "GET /openapi.json",
    "POST /gc",
}


def load_every_operation(url: str) -> schemathesis.BaseSchema:
    """The schema served at ``url`` with every operation it declares selected.

    Schemathesis leaves out the operation that served the schema document itself
    (here ``GET /openapi.json``) unless a filter explicitly includes it; a filter
    matching every path includes it along with all the others.
    """
    return schemathesis.openapi.from_url(url).include(path_regex="^/")


def test_schemathesis_finds_no_server_errors_or_schema_violations(threaded_api_url: str) -> None:
    schema = load_every_operation(threaded_api_url + "openapi.json")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=threaded_api_url.rstrip("/"), checks=CHECKS)

        check()
        tested.append(operation.label)
    assert sorted(tested) == sorted(ALL_OPERATIONS)
