"""Domain errors: each carries a message a user can act on and an HTTP status.

Handlers map them to responses in one place; the message is safe to show (no
paths, no command lines, no secrets).
"""

from __future__ import annotations

from .failures import FailureClass


class ServiceError(Exception):
    """Base of all errors shown to a client."""

    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class InvalidSpec(ServiceError):
    """The provider, spec or ref in the request is malformed or not allowed."""

    status_code = 400


class UnknownProvider(ServiceError):
    status_code = 404


class RefNotFound(ServiceError):
    """The ref does not exist in the repository."""

    status_code = 404


class UpstreamError(ServiceError):
    """A repository host or registry could not be reached or answered badly."""

    status_code = 503


class Forbidden(ServiceError):
    status_code = 403


class TooManyRequests(ServiceError):
    status_code = 429


class BuildFailed(ServiceError):
    """A build ran and did not produce an image, for the reason ``failure_class`` names
    (by default the class's own: ``unknown`` when the code that raised it cannot tell)."""

    status_code = 500
    failure_class = FailureClass.UNKNOWN

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        failure_class: FailureClass | None = None,
    ) -> None:
        super().__init__(message, status_code)
        if failure_class is not None:
            self.failure_class = failure_class
