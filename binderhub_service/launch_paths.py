"""Where a launch link sends the browser, and the server names it picks: pure functions.

A launch link's query says which page of the new server to open, as
BinderHub's links do: ``urlpath`` (a path inside the server, leading ``/``
optional), ``labpath=X`` (``doc/tree/X``) or ``filepath=X`` (``tree/X``).
Every value stays inside the user's server: anything that could name another
origin (a scheme, a host, a backslash, a control character) or climb out of the
server's prefix (``..``) is refused with a message saying so.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import urllib.parse
from collections.abc import Mapping

from .errors import InvalidSpec

LAUNCH_ARGUMENTS = ("urlpath", "labpath", "filepath")

# Characters of a urlpath kept as sent: path separators, the query and the fragment.
_URLPATH_SAFE = "/?#&=%:@!$'()*+,;~"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
SERVER_NAME_MAX = 30


def _refuse(argument: str, value: str, why: str) -> InvalidSpec:
    return InvalidSpec(f"{argument}={value[:200]!r} is not allowed: {why}")


def _check_text(argument: str, value: str) -> None:
    if len(value) > 2000:
        raise _refuse(argument, value, "it is longer than 2000 characters.")
    if not value.isprintable():
        raise _refuse(argument, value, "it holds control characters.")
    if "\\" in value:
        raise _refuse(argument, value, "it holds a backslash, which browsers read as '/'.")


def launch_path(arguments: Mapping[str, str]) -> str:
    """The path inside the server to open (no leading ``/``), from a launch link's query.

    ``labpath`` wins over ``filepath``, which wins over ``urlpath``, as in
    BinderHub. Raises :class:`InvalidSpec` for a value that would leave the
    server (another origin, or ``..`` above the server's prefix).
    """
    for argument in ("labpath", "filepath"):
        if argument in arguments:
            value = arguments[argument]
            _check_text(argument, value)
            prefix = "doc/tree/" if argument == "labpath" else "tree/"
            path = prefix + urllib.parse.quote(value.strip("/"), safe="/")
            return _inside_server(argument, value, path)
    value = arguments.get("urlpath", "")
    _check_text("urlpath", value)
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        raise _refuse("urlpath", value, "it names another site; give a path inside the server.")
    path = urllib.parse.quote(value.lstrip("/"), safe=_URLPATH_SAFE)
    return _inside_server("urlpath", value, path)


def _inside_server(argument: str, value: str, path: str) -> str:
    """``path`` if it names a place inside the server's prefix, else a refusal."""
    base = "/server/"
    joined = urllib.parse.urljoin("http://hub.invalid" + base, path)
    parts = urllib.parse.urlsplit(joined)
    normal = posixpath.normpath(urllib.parse.unquote(parts.path)) + (
        "/" if parts.path.endswith("/") else ""
    )
    if parts.netloc != "hub.invalid" or not (normal + "/").startswith(base):
        raise _refuse(argument, value, "it leads out of your server.")
    segments = urllib.parse.unquote(urllib.parse.urlsplit(path).path).split("/")
    if ".." in segments:
        raise _refuse(argument, value, "'..' segments are not allowed.")
    return path


def server_url(server_path: str, path: str) -> str:
    """The URL of ``path`` inside the server at ``server_path`` (as the hub reports it)."""
    return server_path.rstrip("/") + "/" + path


def server_name(repo_url: str) -> str:
    """A named server's name for a repository: a valid JupyterHub safe slug.

    Lowercase letters, digits and single hyphens, starting with a letter, at
    most 30 characters; a short hash of the whole URL keeps two repositories
    with similar names apart. ``https://github.com/org/My_Repo.git`` gives
    ``my-repo-`` followed by 8 hexadecimal digits.
    """
    path = urllib.parse.urlsplit(repo_url).path or repo_url
    last = path.rstrip("/").rsplit("/", 1)[-1].lower().removesuffix(".git")
    digest = hashlib.sha256(repo_url.encode("utf8")).hexdigest()[:8]
    stem = _NOT_SLUG.sub("-", last).strip("-")
    stem = stem[: SERVER_NAME_MAX - len(digest) - 1].strip("-")
    if not stem or not stem[0].isalpha():
        stem = ("r-" + stem).strip("-")[: SERVER_NAME_MAX - len(digest) - 1].strip("-")
    return f"{stem}-{digest}"
