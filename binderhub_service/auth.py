"""Who is asking, and what they may do: JupyterHub service authentication.

Requests are authenticated by the hub (``jupyterhub.services.auth.HubOAuth``):
API clients send ``Authorization: token <hub token>`` (or ``Bearer``), browsers
log in with OAuth and then carry a cookie. Permissions are hub RBAC scopes on
the token: the service's access scope (``access:services!service=<name>``),
:attr:`ServiceAuth.build_scope` to build and :attr:`ServiceAuth.admin_scope`
to see and manage everyone's builds and to build on behalf of another user.

Cookie-authenticated requests to API routes (the event stream included) must
carry the XSRF token (``X-XSRFToken`` header or ``_xsrf`` argument) whatever
their method: a GET here starts a build, so it is not a harmless read.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.services.auth import HubOAuth, check_scopes
from tornado import web
from traitlets import Bool, Bytes, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import Forbidden, InvalidSpec
from .hub_groups import HubGroups

ON_BEHALF_OF_ARGUMENT = "on_behalf_of"


class AuthConfigError(Exception):
    """Authentication is enabled but the hub's connection details are missing."""


@dataclass(frozen=True)
class Identity:
    """The user or service behind a request, with what it may do here.

    ``kind`` is ``user`` or ``service`` for hub identities and ``anonymous``
    when authentication is off; ``limit_key`` is what per-user limits count by;
    ``groups`` are the user's hub groups (who saved images are shared with),
    unless ``groups_known`` is False: a request acting for a user names only the
    user, and :meth:`ServiceAuth.groups_of` asks the hub when groups matter.
    """

    name: str
    kind: str
    is_admin: bool
    can_build: bool
    limit_key: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    groups_known: bool = True


ANONYMOUS = "anonymous"


def anonymous_identity(remote_ip: str | None) -> Identity:
    """Everyone is equal without authentication: limits count by client address."""
    address = remote_ip or "unknown"
    return Identity(
        name=ANONYMOUS,
        kind="anonymous",
        is_admin=False,
        can_build=True,
        limit_key=f"address:{address}",
    )


class ServiceAuth(LoggingConfigurable):
    """Authentication and authorisation against the JupyterHub this service belongs to."""

    enabled = Bool(
        True,
        help="""Whether requests are authenticated (set from ``BinderHubService.auth_enabled``).""",
    )

    base_url = Unicode("/", help="The service's URL prefix (set by the application).")

    build_scope = Unicode(
        "custom:binderhub-service:build",
        help="""Hub scope a token needs to build images. Declare it in
        ``c.JupyterHub.custom_scopes`` and grant it with ``c.JupyterHub.load_roles``.
        Default ``custom:binderhub-service:build``; an empty string lets everyone with
        access to the service build.""",
    ).tag(config=True)

    admin_scope = Unicode(
        "custom:binderhub-service:admin",
        help="""Hub scope of administrators of this service: they may build, see and manage
        every user's builds, and build on behalf of another user (``on_behalf_of``, used by
        the spawner hook). Default ``custom:binderhub-service:admin``.""",
    ).tag(config=True)

    metrics_auth_required = Bool(
        True,
        help="""Whether ``/metrics`` needs a hub token with access to this service, like every
        other route except ``/health`` and ``/versions``. Default on; set False to let
        Prometheus scrape without a token (keep the route unreachable from outside then).""",
    ).tag(config=True)

    cookie_secret = Bytes(
        help="""Secret that signs the login cookie. Default: the hex-encoded value of
        ``$BINDERHUB_SERVICE_COOKIE_SECRET``, else random at every start (users then log in
        again after a restart). Replicas behind one URL need the same secret.""",
    ).tag(config=True)

    @default("cookie_secret")
    def _default_cookie_secret(self) -> bytes:
        env = os.environ.get("BINDERHUB_SERVICE_COOKIE_SECRET", "")
        return bytes.fromhex(env) if env else os.urandom(32)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub_auth: HubOAuth | None = None
        self.hub_groups: HubGroups | None = None
        if self.enabled:
            self.hub_auth = HubOAuth(parent=self, base_url=self.base_url)
            self._check_hub_settings(self.hub_auth)
            self.hub_groups = HubGroups(self.hub_auth.api_url, self.hub_auth.api_token, parent=self)

    @staticmethod
    def _check_hub_settings(hub_auth: HubOAuth) -> None:
        missing = [
            name
            for name, value in (
                ("JUPYTERHUB_API_TOKEN", hub_auth.api_token),
                ("JUPYTERHUB_CLIENT_ID", hub_auth.oauth_client_id),
            )
            if not value
        ]
        if missing:
            raise AuthConfigError(
                f"Authentication is enabled but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set. Run binderhub-service as a "
                "JupyterHub service (c.JupyterHub.services, which sets these), set the "
                "JUPYTERHUB_* variables of an external service, or run without "
                "authentication with c.BinderHubService.auth_enabled = False."
            )

    def tornado_settings(self) -> dict[str, Any]:
        return {"cookie_secret": self.cookie_secret} if self.enabled else {}

    def _has(self, scope: str, scopes: frozenset[str]) -> bool:
        return not scope or bool(check_scopes({scope}, set(scopes)))

    async def authenticate(
        self, handler: web.RequestHandler, *, api: bool = True
    ) -> Identity | None:
        """The identity behind a request, or None when it is not authenticated.

        Raises :class:`Forbidden` for an authenticated request that lacks the
        service's access scope, or (``api`` routes) the XSRF token a cookie needs.
        Browser pages (``api=False``) follow JupyterHub's rules: a navigation
        needs no XSRF token.
        """
        if self.hub_auth is None:
            return anonymous_identity(handler.request.remote_ip)
        model = await self.hub_auth.get_user(handler, sync=False)
        if not model:
            return None
        if api and not getattr(handler, "_token_authenticated", False):
            check_xsrf(handler)
        scopes = frozenset(model.get("scopes", ()))
        kind = model.get("kind", "user")
        name = model["name"]
        if self.hub_auth.access_scopes and not check_scopes(
            self.hub_auth.access_scopes, set(scopes)
        ):
            self.log.warning("Refusing %s %s: no access scope for this service", kind, name)
            raise Forbidden(f"The hub does not allow {kind} {name} to use this service.")
        is_admin = self._has(self.admin_scope, scopes) if self.admin_scope else False
        identity = Identity(
            name=name,
            kind=kind,
            is_admin=is_admin,
            can_build=is_admin or self._has(self.build_scope, scopes),
            limit_key=f"{kind}:{name}",
            scopes=scopes,
            groups=frozenset(g for g in model.get("groups") or () if isinstance(g, str)),
        )
        return self._acting_for(identity, handler.request.query_arguments)

    def _acting_for(self, identity: Identity, arguments: dict[str, list[bytes]]) -> Identity:
        """An admin acting for the user ``on_behalf_of`` names (a hub component, e.g. the
        spawner hook). The argument, when present, must name one user, exactly once."""
        if ON_BEHALF_OF_ARGUMENT not in arguments:
            return identity
        values = arguments[ON_BEHALF_OF_ARGUMENT]
        user = values[0].decode("utf8", "replace") if len(values) == 1 else ""
        if not user or user != user.strip() or not user.isprintable() or len(user) > 255:
            raise InvalidSpec(
                f"{ON_BEHALF_OF_ARGUMENT!r} must name one user, once (a non-empty hub "
                "user name of at most 255 characters)."
            )
        if not identity.is_admin:
            raise Forbidden(
                f"Only holders of the {self.admin_scope} scope may act on behalf of another user."
            )
        self.log.info("%s %s acts on behalf of user %s", identity.kind, identity.name, user)
        return Identity(
            name=user,
            kind="user",
            is_admin=False,
            can_build=True,
            limit_key=f"user:{user}",
            groups_known=False,
        )

    async def groups_of(self, identity: Identity) -> frozenset[str]:
        """The hub groups of ``identity``, asking the hub when the request did not say."""
        if identity.groups_known or self.hub_groups is None:
            return identity.groups
        return await self.hub_groups.groups_of(identity.name)


def check_xsrf(handler: web.RequestHandler) -> None:
    """Require the XSRF token on a cookie-authenticated API request, whatever its method."""
    token = (
        handler.get_argument("_xsrf", None)
        or handler.request.headers.get("X-XSRFToken")
        or handler.request.headers.get("X-CSRFToken")
    )
    expected: bytes = handler.xsrf_token
    if not token or not hmac.compare_digest(token.encode("utf8", "replace"), expected):
        raise Forbidden(
            "A request authenticated by cookie must send the XSRF token "
            "(X-XSRFToken header or _xsrf argument); API clients send a hub token instead."
        )
