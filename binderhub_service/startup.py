"""Start-up checks: every configuration mistake becomes one line naming the option.

Each check raises :class:`ConfigError`; the application logs its message as one
line and exits with status 1, without a traceback. The checks run before the
service opens its database or listens, so a bad value changes nothing.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import urllib.parse
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from tornado.netutil import bind_sockets
from traitlets import TraitError
from traitlets.config import Application
from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

if TYPE_CHECKING:
    from .app import BinderHubService

EXECUTOR_GROUP = "binderhub_service.executors"
_OBJECT_REPR = re.compile(r"<([\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")
# traitlets: "The 'port' trait of a BinderHubService instance expected an int, not ..."
_TRAIT_ERROR = re.compile(r"^The '(\w+)' trait of an? (\w+) instance (?:must be )?(.*)$")


class ConfigError(Exception):
    """A configuration value the service cannot run with; the message is the one line shown."""


def bad_value(option: str, value: Any, allowed: str) -> ConfigError:
    """The error for ``c.<option> = value``, saying what is allowed instead."""
    return ConfigError(f"c.{option} = {value!r} is not valid: {allowed}.")


def executor_names() -> list[str]:
    """Names of the installed executors (entry points), e.g. ``['kubernetes', 'local']``."""
    return sorted(ep.name for ep in entry_points(group=EXECUTOR_GROUP))


def trait_error_message(error: Exception) -> str:
    """A traitlets error as one line naming the option, without ``<... object at 0x...>``."""
    text = _OBJECT_REPR.sub(r"\2", " ".join(str(error).split()))
    return _TRAIT_ERROR.sub(r"c.\2.\1 is not valid: \3", text)


def load_config_file(app: Application, path: str, explicit: bool) -> None:
    """Load ``path`` into ``app``; a missing explicit file or a broken file is an error.

    ``explicit``: the path was given (``--config``); the default path may be absent.
    A bad trait value is left as the :class:`~traitlets.TraitError` it raises.
    """
    if not os.path.isfile(path):
        if explicit:
            raise ConfigError(f"--config {path!r}: no such file.")
        return
    folder, name = os.path.split(os.path.abspath(path))
    loader_class = JSONFileConfigLoader if name.endswith(".json") else PyFileConfigLoader
    try:
        config = loader_class(name, path=folder, log=app.log).load_config()
        config.merge(app.cli_config)  # the command line wins over the file
        app.update_config(config)
    except ConfigFileNotFound:
        raise ConfigError(f"--config {path!r}: no such file.") from None
    except TraitError:
        raise
    except SyntaxError as e:
        raise ConfigError(f"Config file {path!r} line {e.lineno}: syntax error: {e.msg}.") from None
    except ConfigError:
        raise
    except Exception as e:
        # The file is Python: anything it raises (NameError, ImportError, a bad
        # trait value) stops the service, named by where it came from.
        raise ConfigError(
            f"Config file {path!r}: {type(e).__name__}: {trait_error_message(e)}"
        ) from None


def check_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise bad_value("BinderHubService.port", value, "a TCP port from 1 to 65535")


def check_db_url(value: str) -> None:
    allowed = (
        "an async SQLAlchemy URL such as sqlite+aiosqlite:////srv/binder/db.sqlite or "
        "postgresql+asyncpg://user:password@host/db"
    )
    try:
        url = make_url(value)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise bad_value("BinderHubService.db_url", _hide_password(value), allowed) from None
    if not getattr(dialect, "is_async", False):
        raise bad_value("BinderHubService.db_url", _hide_password(value), allowed)


def _hide_password(value: str) -> str:
    try:
        return make_url(value).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", value)


def check_registry_url(value: str) -> None:
    if not value:
        return
    parts = urllib.parse.urlsplit(value)
    valid = parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
    try:
        valid = valid and (parts.port is None or parts.port > 0)
    except ValueError:
        valid = False
    if not valid:
        raise bad_value(
            "DockerRegistry.url",
            value,
            "an http:// or https:// URL such as http://127.0.0.1:5000 or "
            "https://registry.example.org, or empty for no registry",
        )


def check_file(option: str, value: str) -> None:
    if value and not os.path.isfile(value):
        raise bad_value(option, value, "the path of an existing file (no such file)")


def check_kubernetes_reachable(api_url: str) -> None:
    """A cluster to talk to: ``api_url``, the in-cluster service account, or a kubeconfig."""
    if api_url or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return
    kubeconfigs = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)
    if any(os.path.isfile(os.path.expanduser(p)) for p in kubeconfigs if p):
        return
    raise bad_value(
        "BinderHubService.executor_class",
        "kubernetes",
        "no Kubernetes cluster found (not running in a pod: KUBERNETES_SERVICE_HOST is "
        "unset; no kubeconfig file; c.KubernetesExecutor.api_url is empty); run in a "
        "cluster, provide a kubeconfig, or use executor_class = 'local'",
    )


def check_settings(app: BinderHubService) -> None:
    """Every start-up check of the application's settings, in one place."""
    from .executors.local import LocalDockerExecutor

    check_port(app.port)
    check_db_url(app.db_url)
    check_registry_url(app.registry.url)
    if isinstance(app.executor, LocalDockerExecutor):
        r2d_config = app.executor.repo2docker_config_file
        check_file("LocalDockerExecutor.repo2docker_config_file", r2d_config)
    if app.executor.name == "kubernetes":
        # Not imported here: its client is slow to import and loaded only when chosen.
        check_kubernetes_reachable(getattr(app.executor, "api_url", ""))


def bind(ip: str, port: int) -> list[socket.socket]:
    """Listening sockets on ``ip``:``port``, or the one-line reason they cannot be had."""
    try:
        return bind_sockets(port, ip or None)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            reason = "the port is in use by another process"
        raise ConfigError(
            f"Cannot listen on {ip}:{port} (c.BinderHubService.ip, c.BinderHubService.port): "
            f"{reason}."
        ) from None
