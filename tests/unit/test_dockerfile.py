"""Dockerfiles that would make the engine fetch outside the build's network are refused."""

from __future__ import annotations

import pytest

from binderhub_service.dockerfile import (
    RefusedDockerfile,
    add_sources,
    check_dockerfile_text,
    check_dockerfiles,
    instructions,
    refused_adds,
)

FROM = "FROM base:1\n"


@pytest.mark.parametrize(
    "text",
    [
        "ADD http://127.0.0.1:9/x /x\n",
        "add https://example.org/a.tgz /a\n",
        "ADD --chown=1000:1000 --checksum=sha256:00 https://example.org/a /a\n",
        "ADD \\\n    --link \\\n    http://example.org/a \\\n    /a\n",
        'ADD ["http://example.org/a", "/a"]\n',
        "ADD git@github.com:org/repo.git /repo\n",
        "ADD https://github.com/org/repo.git#main /repo\n",
        "ADD local.txt http://example.org/b /dst/\n",
        "ARG U=http://127.0.0.1:9/\nADD $U /x\n",
        "ADD ${U} /x\n",
        "# escape=`\nFROM base:1\nADD `\n  http://example.org/a /a\n",
        "ADD \\\n# a comment inside\n  http://example.org/a /a\n",
    ],
)
def test_remote_add_sources_are_refused(text):
    if not text.startswith("# escape"):
        text = FROM + text
    with pytest.raises(RefusedDockerfile) as error:
        check_dockerfile_text(text, "Dockerfile")
    assert "RUN" in error.value.message
    assert "Dockerfile line" in error.value.message


@pytest.mark.parametrize(
    "text",
    [
        "ADD local.tgz /opt/\n",
        "COPY . /src\n",
        "RUN curl -fLo /x http://example.org/x\n",
        "RUN echo ADD http://example.org/x\n",
        "# ADD http://example.org/x /x\n",
        "ADD <<EOF /x\nhttp://example.org\nEOF\n",
    ],
)
def test_other_instructions_pass(text):
    check_dockerfile_text(FROM + text, "Dockerfile")


def test_a_syntax_directive_is_refused():
    with pytest.raises(RefusedDockerfile) as error:
        check_dockerfile_text("# syntax=127.0.0.1:5000/frontend\n" + FROM, "binder/Dockerfile")
    assert "syntax" in error.value.message


def test_instructions_join_continuations_and_keep_their_first_line():
    parsed = instructions("FROM a\n\nRUN echo 1 \\\n  && echo 2\nADD x y\n")
    assert [(i.line, i.keyword) for i in parsed] == [(1, "FROM"), (3, "RUN"), (5, "ADD")]
    assert parsed[1].arguments == "echo 1 && echo 2"


def test_add_sources():
    assert add_sources("--chown=1 a b /dst") == ["a", "b"]
    assert add_sources('["a b", "/dst"]') == ["a b"]
    assert refused_adds(FROM + "ADD a /b\n") == []


def test_every_dockerfile_repo2docker_could_build_is_checked(tmp_path):
    (tmp_path / "Dockerfile").write_text(FROM)
    (tmp_path / ".binder").mkdir()
    (tmp_path / ".binder" / "Dockerfile").write_text(FROM + "ADD https://example.org/a /a\n")
    with pytest.raises(RefusedDockerfile) as error:
        check_dockerfiles(str(tmp_path))
    assert ".binder/Dockerfile line 2" in error.value.message
