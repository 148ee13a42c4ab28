import base64

from binderhub_service.registry import credentials_from_docker_config, parse_www_authenticate


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
    assert credentials_from_docker_config(config, "registry.example.org") == ("user", "pa:ss")
    assert credentials_from_docker_config(config, "127.0.0.1:5000") == ("u", "p")
    assert credentials_from_docker_config(config, "other.org") is None
    assert credentials_from_docker_config({}, "other.org") is None
