"""Known secret values, replaced by ``***`` in anything the service stores or logs.

The application fills one :class:`Redactor` at start with the secrets it holds
(the hub API token, the cookie secret, registry passwords, provider tokens,
git credentials) and adds a request's git credential when its build starts.
Build events, failure reasons and the service's log records (through
:meth:`Redactor.log_filter`) pass through it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from traitlets import HasTraits

from .docker_config import registry_auths
from .text import clean_text

MASK = "***"

# Values shorter than this are not treated as secrets: redacting them would
# mangle ordinary text (and a secret that short protects nothing).
MIN_SECRET_LENGTH = 6

# Names of traits, environment variables and dict keys that hold secrets.
SECRET_NAME = re.compile(r"token|secret|password|passwd|credential|api_?key", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL without any user name or password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


class Redactor:
    """Replaces every known secret value (and its URL-encoded form) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str | bytes | None) -> None:
        """Treat ``values`` as secrets from now on; short and empty values are ignored."""
        new: set[str] = set()
        for value in values:
            if isinstance(value, bytes):
                new.update(_forms_of_bytes(value))
            elif value:
                new.update(_forms(value))
        new = {v for v in new if len(v) >= MIN_SECRET_LENGTH} - self._secrets
        if not new:
            return
        self._secrets |= new
        # Longest first, so that a secret containing another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def add_git_credential(self, value: str | None) -> None:
        """A ``GIT_CREDENTIAL_ENV`` value (``username=...\\npassword=...``) and its password."""
        if not value:
            return
        self.add(value)
        for line in value.replace("\\n", "\n").splitlines():
            key, _, secret = line.partition("=")
            if key.strip() == "password":
                self.add(secret)

    def add_from(self, configurable: HasTraits) -> None:
        """Every string held by a trait whose name says it is a secret (token, password...)."""
        for name in configurable.trait_names():
            if SECRET_NAME.search(name):
                self.add(*_strings(getattr(configurable, name, None)))

    def add_from_environment(self, environ: dict[str, str] | None = None) -> None:
        """Values of environment variables whose names say they hold secrets."""
        for name, value in (os.environ if environ is None else environ).items():
            if SECRET_NAME.search(name):
                self.add(value)

    def add_docker_config(self, config: dict[str, Any]) -> None:
        """The credentials in a docker ``config.json`` document (``auths``)."""
        for entry in registry_auths(config):
            for secret in entry.secrets:
                self.add(secret)

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def log_filter(self) -> logging.Filter:
        """A filter for log handlers that redacts each record's message and traceback
        (and replaces control characters in the message, so one record is one entry)."""
        return _RedactingFilter(self)


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(clean_text(record.getMessage()))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _forms(value: str) -> Iterator[str]:
    """A secret as it may appear in text: as is, URL-encoded, and base64-encoded."""
    yield value
    yield urllib.parse.quote(value, safe="")
    yield urllib.parse.quote_plus(value)
    yield base64.b64encode(value.encode()).decode()


def _forms_of_bytes(value: bytes) -> Iterator[str]:
    yield value.hex()
    with contextlib.suppress(UnicodeDecodeError):
        yield from _forms(value.decode())


def _strings(value: Any) -> Iterator[str | bytes]:
    """The secrets in a trait's value: strings and bytes, and in nested dicts the
    strings under secret-sounding keys (``password``, not ``username``)."""
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list | tuple | set) or SECRET_NAME.search(str(key)):
                yield from _strings(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)
