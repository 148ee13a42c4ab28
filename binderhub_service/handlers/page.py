"""The web page for people: ``{base_url}`` and its static files under ``{base_url}static/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web
from tornado.escape import xhtml_escape

from .base import BaseHandler, set_security_headers

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The page loads only its own scripts, styles and images: no inline code, no other origin.
PAGE_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)


class PageHandler(BaseHandler):
    """``GET {base_url}``: the build, history and saved-images page.

    With authentication on, visitors without a login are sent to the hub's
    login, and the answer sets the ``_xsrf`` cookie the page's scripts send
    back as ``X-XSRFToken``. Who is asking is written into ``data-``
    attributes of the document, never into a script.
    """

    browser_page = True
    content_security_policy = PAGE_POLICY

    def get(self) -> None:
        if self.hub_auth is not None:
            self.xsrf_token  # noqa: B018 (sets the _xsrf cookie on this navigation)
        identity = self.identity
        html = (STATIC_DIR / "index.html").read_text()
        html = html.replace("{{user}}", xhtml_escape(identity.name))
        html = html.replace("{{admin}}", "1" if identity.is_admin else "0")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)


class StaticHandler(web.StaticFileHandler):
    """The page's scripts, styles and images, with the service's security headers."""

    def set_default_headers(self) -> None:
        set_security_headers(self, PAGE_POLICY)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


def page_handlers(base_url: str) -> list[Any]:
    """The page's routes: the document at ``base_url``, its files under ``static/``."""
    return [
        (base_url, PageHandler),
        (base_url + "static/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
    ]
