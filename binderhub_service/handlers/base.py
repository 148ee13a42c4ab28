"""The base of every handler: error responses in one place."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from tornado import web

from ..errors import ServiceError
from ..store.records import ANONYMOUS


class Identity(NamedTuple):
    """Who is asking: a user name (``anonymous`` when authentication is off) and admin rights."""

    name: str
    is_admin: bool


class BaseHandler(web.RequestHandler):
    """JSON errors for API routes; :class:`ServiceError` maps to its status.

    :meth:`current_identity` is the one place that says who is asking.
    """

    def current_user_name(self) -> str | None:
        """The authenticated user's name; None when authentication is off."""
        return None

    def current_user_is_admin(self) -> bool:
        """Whether the authenticated user may see and manage everyone's records."""
        return False

    def current_identity(self) -> Identity:
        name = self.current_user_name()
        return Identity(name or ANONYMOUS, name is not None and self.current_user_is_admin())

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            error = exc_info[1]
            if isinstance(error, ServiceError):
                message = error.message
            elif isinstance(error, web.HTTPError) and error.log_message:
                message = error.log_message % error.args if error.args else error.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ServiceError) and not self._finished:
            self.send_error(e.status_code, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)
