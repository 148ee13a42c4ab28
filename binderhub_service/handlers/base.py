"""The base of every handler: identity, limits and error responses in one place."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from jupyterhub.services.auth import HubAuthenticated, HubOAuth
from tornado import web

from ..auth import Identity, ServiceAuth, anonymous_identity
from ..errors import Forbidden, ServiceError
from ..image_access import Viewer, viewer_of
from ..limits import RateLimited, UserLimits

# Answers are JSON or event streams, never documents to render: nothing may load.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def set_security_headers(handler: web.RequestHandler, policy: str) -> None:
    """``nosniff`` on every answer, and a Content-Security-Policy (unless ``policy`` is empty)."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    if policy:
        handler.set_header("Content-Security-Policy", policy)


class BaseHandler(HubAuthenticated, web.RequestHandler):
    """JSON errors for API routes; :class:`ServiceError` maps to its status.

    Every route is authenticated by the hub unless :meth:`auth_required` says
    otherwise: :meth:`prepare` resolves the identity (a hub token, or a login
    cookie with its XSRF token) and counts the request against the user's rate
    limit. API routes refuse anonymous requests with 403; browser pages
    (``browser_page = True``) redirect them to the hub's login instead.

    The application puts its :class:`ServiceAuth` and :class:`UserLimits` in the
    Tornado settings (``service_auth``, ``user_limits``); without them every
    request is anonymous and unlimited.
    """

    browser_page = False

    # A handler serving an HTML page sets a policy of its own here.
    content_security_policy = CONTENT_SECURITY_POLICY

    _identity: Identity | None = None

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        set_security_headers(self, self.content_security_policy)

    @property
    def service_auth(self) -> ServiceAuth | None:
        return self.settings.get("service_auth")

    @property
    def user_limits(self) -> UserLimits | None:
        return self.settings.get("user_limits")

    @property
    def hub_auth(self) -> HubOAuth | None:
        return self.service_auth.hub_auth if self.service_auth else None

    def auth_required(self) -> bool:
        """Whether this route needs an authenticated, authorised identity."""
        return True

    async def prepare(self) -> None:
        if not self.auth_required():
            return
        if self.service_auth is None:
            self._identity = anonymous_identity(self.request.remote_ip)
        else:
            self._identity = await self.service_auth.authenticate(self, api=not self.browser_page)
        if self._identity is None:
            if self.browser_page:
                self.redirect(self.get_login_url())
                return
            raise Forbidden(
                "Authentication required: send a hub token (Authorization: token <token>) "
                "or log in through the hub."
            )
        if self.user_limits is not None:
            self.user_limits.check_rate(self._identity.limit_key)

    @property
    def identity(self) -> Identity:
        """Who is asking, as :meth:`prepare` resolved it; builds and saved images are
        recorded under ``.name``.

        Anonymous on open routes. Without authentication everyone is the one user
        ``anonymous`` (limits still count by client address) and nobody is an admin.
        """
        if self._identity is None:
            return anonymous_identity(self.request.remote_ip)
        return self._identity

    async def saved_image_viewer(self) -> Viewer:
        """Who is asking, as saved images see them: with their hub groups, asked of the
        hub when the request only names the user."""
        identity = self.identity
        auth = self.service_auth
        groups = await auth.groups_of(identity) if auth is not None else identity.groups
        return replace(viewer_of(identity), groups=groups)

    def get_current_user(self) -> Identity | None:
        return self._identity

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this handler implements (for 405 answers' ``Allow``)."""
        return [
            method
            for method in self.SUPPORTED_METHODS
            if getattr(type(self), method.lower())
            is not getattr(web.RequestHandler, method.lower())
        ]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            error = exc_info[1]
            if isinstance(error, ServiceError):
                message = error.message
            elif isinstance(error, web.HTTPError) and error.log_message:
                message = error.log_message % error.args if error.args else error.log_message
            if isinstance(error, RateLimited):
                self.set_header("Retry-After", str(error.retry_after))
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ServiceError) and not self._finished:
            self.send_error(e.status_code, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class NotFoundHandler(BaseHandler):
    """Any path no route matches: a JSON 404, with the same headers as every answer."""

    def auth_required(self) -> bool:
        return False

    async def prepare(self) -> None:
        raise web.HTTPError(404, "Not found.")
