"""Browser login through the hub: the OAuth callback and a page that starts it."""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler

from .base import BaseHandler


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """``GET oauth_callback``: the hub redirects here after login; sets the login cookie."""

    def initialize(self, *, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth


class LoginHandler(BaseHandler):
    """``GET login``: log in through the hub, then answer who you are.

    Visitors without a login cookie are sent to the hub's login and come back
    here. The answer sets the ``_xsrf`` cookie whose value browser clients send
    as ``X-XSRFToken`` on API requests (``@jupyterhub/binderhub-client`` does).
    """

    browser_page = True

    def get(self) -> None:
        self.xsrf_token  # noqa: B018 (sets the _xsrf cookie on this navigation)
        identity = self.identity
        self.write_json(
            {
                "name": identity.name,
                "kind": identity.kind,
                "admin": identity.is_admin,
                "can_build": identity.can_build,
            }
        )
