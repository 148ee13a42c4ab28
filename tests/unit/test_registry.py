import base64

from binderhub_service.docker_config import credentials_for, registry_auths
from binderhub_service.registry import parse_www_authenticate


def test_parse_bearer_challenge():
    scheme, params = parse_www_authenticate(
        'Bearer realm="https://auth.example.org/token",service="registry.example.org",'
        'scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.org/token",
        "service": "registry.example.org",
        "scope": "repository:a/b:pull",
    }


def test_parse_basic_challenge():
    assert parse_www_authenticate('Basic realm="R"') == ("basic", {"realm": "R"})


def test_credentials_from_docker_config():
    auth = base64.b64encode(b"user:pa:ss").decode()
    config = {
        "auths": {
            "https://registry.example.org/v1/": {"auth": auth},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
        }
    }
    assert credentials_for(config, "registry.example.org") == ("user", "pa:ss")
    assert credentials_for(config, "127.0.0.1:5000") == ("u", "p")
    assert credentials_for(config, "other.org") is None
    assert credentials_for({}, "other.org") is None


def test_odd_docker_config_entries_are_skipped_and_secrets_collected():
    config = {
        "auths": {
            "bad-base64": {"auth": "%%%"},
            "not-a-dict": "x",
            "tokens.example": {"identitytoken": "id-token-1"},
            "r.example": {"auth": base64.b64encode(b"pusher:pw-9").decode()},
        }
    }
    entries = {e.host: e for e in registry_auths(config)}
    assert set(entries) == {"bad-base64", "tokens.example", "r.example"}
    assert entries["bad-base64"].username is None
    assert entries["tokens.example"].secrets == ("id-token-1",)
    assert entries["r.example"].username == "pusher"
    assert "pw-9" in entries["r.example"].secrets
    assert credentials_for(config, "bad-base64") is None
    assert registry_auths({"auths": ["not", "a", "dict"]}) == []
