"""Git credentials in the form repo2docker's build image reads them.

repo2docker's container image configures git with ``credential.helper env``,
a helper script that runs ``echo -e $GIT_CREDENTIAL_ENV``. The variable holds
the helper's answer with *literal* ``\\n`` sequences between lines::

    GIT_CREDENTIAL_ENV='username=someone\\npassword=s3cret'

:func:`credential_env_value` builds that value. :func:`git_credential_env` gives
the environment that makes any git (not only the one in repo2docker's image)
answer credential requests for one origin from that same variable, so that a
secret never appears on a command line or in a URL.

The providers make the value and the build side (the fetch step, build pods)
hands it to git, so it lives below both.
"""

from __future__ import annotations

import re
import urllib.parse

GIT_CREDENTIAL_ENV = "GIT_CREDENTIAL_ENV"

# Unquoted `echo -e $VAR` splits on whitespace and control characters would
# end the helper's answer early; such values cannot be passed through.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")

# The helper answers only `get` requests, printing the value with its `\n`
# escapes expanded, exactly as repo2docker's `echo -e` does.
_HELPER = '!f() { test "$1" = get && printf \'%b\\n\' "$GIT_CREDENTIAL_ENV"; }; f'


def credential_env_value(username: str, password: str) -> str:
    """The ``GIT_CREDENTIAL_ENV`` value for one user name and password (or token)."""
    for what, value in (("user name", username), ("password", password)):
        if not value:
            raise ValueError(f"A git credential's {what} is empty.")
        if _UNSAFE.search(value):
            raise ValueError(
                f"A git credential's {what} contains whitespace or control characters."
            )
    escape = str.maketrans({"\\": "\\\\"})
    return f"username={username.translate(escape)}\\npassword={password.translate(escape)}"


def git_credential_env(value: str, url: str) -> dict[str, str]:
    """Environment variables that make git answer credential requests for ``url``'s origin.

    Uses git's ``GIT_CONFIG_COUNT`` configuration (git 2.31 or later) to set a
    credential helper scoped to ``scheme://host[:port]``, so a redirect to
    another host never receives the secret.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return {
        GIT_CREDENTIAL_ENV: value,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"credential.{origin}.helper",
        "GIT_CONFIG_VALUE_0": _HELPER,
    }
