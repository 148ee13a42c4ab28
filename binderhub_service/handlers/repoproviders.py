"""``GET {base_url}api/repoproviders``: the enabled repository providers, for forms and clients."""

from __future__ import annotations

import json

from tornado.web import RequestHandler

from ..providers.catalog import RepoProviderCatalog
from .base import CONTENT_SECURITY_POLICY, set_security_headers


class RepoProvidersHandler(RequestHandler):
    """Serves the enabled providers as BinderHub's ``api/repoproviders`` does.

    A JSON list with one object per provider: ``id`` (the spec prefix),
    ``displayName``, ``repo`` (label, placeholder, ``urlEncode``), ``ref``
    (``enabled``, ``default``) and, where known, ``spec.validateRegex`` and
    ``detect.regex``.
    """

    def initialize(self, catalog: RepoProviderCatalog) -> None:
        self.catalog = catalog

    def set_default_headers(self) -> None:
        set_security_headers(self, CONTENT_SECURITY_POLICY)

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.finish(json.dumps(self.catalog.describe()))
