"""The Redactor: known secret values become ``***`` in text and in log records."""

from __future__ import annotations

import base64
import logging
import sys
import urllib.parse

from traitlets import Dict, HasTraits, Unicode

from binderhub_service.redact import Redactor
from binderhub_service.text import clean_text


def test_secrets_and_their_encoded_forms_are_masked() -> None:
    redact = Redactor(["s3cret/token+value"])
    for form in (
        "s3cret/token+value",
        urllib.parse.quote("s3cret/token+value", safe=""),
        urllib.parse.quote_plus("s3cret/token+value"),
        base64.b64encode(b"s3cret/token+value").decode(),
    ):
        assert redact(f"before {form} after") == "before *** after"


def test_short_and_empty_values_are_not_secrets() -> None:
    redact = Redactor(["", "abc"])
    redact.add(None, b"")
    assert redact("abc abc") == "abc abc"


def test_the_longest_secret_wins() -> None:
    redact = Redactor(["password", "password-with-more"])
    assert redact("x password-with-more y") == "x *** y"


def test_git_credential_docker_config_environment_and_traits() -> None:
    redact = Redactor()
    redact.add_git_credential("username=builder\\npassword=gitpass-123")
    auth = base64.b64encode(b"pusher:registry-pw-9").decode()
    redact.add_docker_config({"auths": {"r.example": {"auth": auth}, "bad": "x"}})
    redact.add_from_environment({"HUB_API_TOKEN": "env-token-1", "HOME": "/home/user"})

    class Provider(HasTraits):
        access_token = Unicode("trait-token-1")
        credentials_by_host = Dict({"h": {"username": "someone", "password": "dict-pw-1"}})
        name = Unicode("not-a-secret")

    redact.add_from(Provider())
    text = "gitpass-123 registry-pw-9 env-token-1 trait-token-1 dict-pw-1 " + auth
    assert redact(text) == " ".join(["***"] * 6)
    assert redact("someone not-a-secret /home/user builder") == (
        "someone not-a-secret /home/user builder"
    )


def test_cookie_secret_bytes_are_masked_as_hex() -> None:
    redact = Redactor()
    redact.add(b"\x01\x02\xfe\xff\x00\x10")
    assert redact("secret=0102feff0010") == "secret=***"


def test_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    redact = Redactor(["hub-token-xyz"])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "token %s", ("hub-token-xyz",), None
    )
    try:
        raise RuntimeError("failed with hub-token-xyz")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert redact.log_filter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "hub-token-xyz" not in formatted
    assert "token ***" in formatted and "failed with ***" in formatted


def test_clean_text_keeps_tabs_and_newlines_and_replaces_the_rest() -> None:
    assert clean_text("a\tb\nc") == "a\tb\nc"
    assert clean_text("a\x00b\r\nc\rd\x7f\x9b\ud800") == "a\ufffdb\nc\nd\ufffd\ufffd\ufffd"
