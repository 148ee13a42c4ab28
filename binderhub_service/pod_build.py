"""A build pod's program: fetch, build, push, as the local executor does (three steps).

``python -m binderhub_service.pod_build SPEC`` (or with the spec in
``BINDERHUB_BUILD_SPEC``) runs one build in a build pod. The spec is a JSON
object, nothing of it secret (see :func:`parse_spec`). Each step gets only
what it needs:

1. fetch: :class:`~binderhub_service.fetch.Fetcher` clones the repository into
   a folder below ``/tmp`` (the pod's emptyDir), with the git credential read
   from ``GIT_CREDENTIAL_ENV`` for this step only;
2. build: repo2docker builds the checkout as a local folder, never pushes, in
   an environment built from scratch whose ``DOCKER_CONFIG`` is an empty folder;
3. push: ``docker push`` with ``DOCKER_CONFIG`` the pod's registry credentials.

Everything written to standard output is a repo2docker JSON log line
(``{"phase": ..., "message": ...}``), which the Kubernetes executor relays;
a failure ends with one ``failed`` line that also names the failure's class
(``failure_class``, read from every line each step printed) and a non-zero
exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .build_container import repo2docker_config
from .errors import BuildFailed
from .events import BuildEvent, Phase
from .failures import FailureClass, OutputClassifier, Step
from .fetch import FETCH_PATH, Fetcher, FetchSettings, Source
from .git_credentials import GIT_CREDENTIAL_ENV
from .repo2docker import Repo2DockerOptions, build_args

SPEC_ENV = "BINDERHUB_BUILD_SPEC"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Lines of repo2docker or docker push may be long (build output).
MAX_LINE_BYTES = 4 * 1024 * 1024
INVALID_SPEC = "The build pod was started without a valid build spec; ask the operator."
UNEXPECTED = "The build stopped on an unexpected error; ask the operator."
FAILED = "The build failed; the build log above shows why."
BUILD_STOPPED = "The image build stopped with exit status {code}."
PUSH_FAILED = (
    "Pushing the image to the registry failed; try again later, or ask the "
    "operator to check the registry."
)

Print = Callable[[str], None]


class Reported(BuildFailed):
    """A failure repo2docker reported with its own ``failed`` line (``message``, kept
    back to be printed with the failure's class)."""


class InvalidSpec(ValueError):
    """The build spec is not what :func:`parse_spec` accepts."""


@dataclass(frozen=True)
class BuildSpec:
    """One build pod's build: what to fetch, how to build it, where it goes."""

    repo2docker: Repo2DockerOptions
    content_provider: str
    # The folder holding the registry's config.json for the push; None pushes without one.
    registry_config_dir: str | None = None
    # The operator's extra environment of repo2docker (KubernetesExecutor.build_env).
    env: Mapping[str, str] = field(default_factory=dict)
    repo2docker_command: tuple[str, ...] = ("repo2docker",)
    fetch_timeout: float = 600.0
    max_checkout_bytes: int = 10 * 2**30

    def to_json(self) -> str:
        """The spec as :func:`parse_spec` reads it."""
        r2d = self.repo2docker
        data: dict[str, Any] = {
            "repo_url": r2d.repo_url,
            "ref": r2d.ref,
            "content_provider": self.content_provider,
            "image_name": r2d.image_name,
            "push": r2d.push,
            "user_id": r2d.user_id,
            "user_name": r2d.user_name,
            "config_file": r2d.config_file,
            "extra_args": list(r2d.extra_args),
            "registry_config_dir": self.registry_config_dir,
            "env": dict(self.env),
            "repo2docker_command": list(self.repo2docker_command),
            "fetch_timeout": self.fetch_timeout,
            "max_checkout_bytes": self.max_checkout_bytes,
        }
        return json.dumps(data, sort_keys=True)


_STRINGS = ("repo_url", "ref", "content_provider", "image_name", "user_name")


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidSpec(f"{name} must be a list of strings")
    return value


def parse_spec(text: str) -> BuildSpec:
    """The :class:`BuildSpec` in JSON ``text``, or :class:`InvalidSpec` saying what is wrong.

    Required: ``repo_url``, ``ref``, ``content_provider``, ``image_name``,
    ``push``, ``user_id``, ``user_name``; the other fields of
    :meth:`BuildSpec.to_json` are optional. Unknown fields are refused.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidSpec("the spec is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidSpec("the spec is not a JSON object")
    known = {*_STRINGS, "push", "user_id", "config_file", "extra_args", "registry_config_dir"}
    known |= {"env", "repo2docker_command", "fetch_timeout", "max_checkout_bytes"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSpec(f"unknown fields: {', '.join(unknown)}")
    for name in _STRINGS:
        if not isinstance(data.get(name), str) or not data[name]:
            raise InvalidSpec(f"{name} must be a non-empty string")
    if not isinstance(data.get("push"), bool):
        raise InvalidSpec("push must be true or false")
    user_id = data.get("user_id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 0:
        raise InvalidSpec("user_id must be a non-negative integer")
    for name in ("config_file", "registry_config_dir"):
        if not isinstance(data.get(name), str | None):
            raise InvalidSpec(f"{name} must be a string or null")
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise InvalidSpec("env must map strings to strings")
    command = _strings(data.get("repo2docker_command", ["repo2docker"]), "repo2docker_command")
    if not command:
        raise InvalidSpec("repo2docker_command must not be empty")
    timeout = data.get("fetch_timeout", 600.0)
    max_bytes = data.get("max_checkout_bytes", 10 * 2**30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise InvalidSpec("fetch_timeout must be a positive number")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise InvalidSpec("max_checkout_bytes must be a positive integer")
    options = Repo2DockerOptions(
        repo_url=data["repo_url"],
        ref=data["ref"],
        image_name=data["image_name"],
        push=data["push"],
        user_id=user_id,
        user_name=data["user_name"],
        config_file=data.get("config_file"),
        extra_args=tuple(_strings(data.get("extra_args", []), "extra_args")),
    )
    return BuildSpec(
        repo2docker=options,
        content_provider=data["content_provider"],
        registry_config_dir=data.get("registry_config_dir"),
        env=env,
        repo2docker_command=tuple(command),
        fetch_timeout=float(timeout),
        max_checkout_bytes=max_bytes,
    )


def read_spec(argv: Sequence[str], environ: Mapping[str, str]) -> BuildSpec:
    """The spec given as the one argument, else in :data:`SPEC_ENV`."""
    if len(argv) > 1:
        raise InvalidSpec("at most one argument (the spec) is accepted")
    text = argv[0] if argv else environ.get(SPEC_ENV, "")
    return parse_spec(text)


def _search_path() -> str:
    """The steps' ``PATH``: this Python's folder (repo2docker's), then the system's."""
    return f"{os.path.dirname(sys.executable)}:{FETCH_PATH}"


def build_environment(spec: BuildSpec, workdir: str, docker_host: str) -> dict[str, str]:
    """repo2docker's whole environment: nothing of the pod's, no registry credentials."""
    env = dict(spec.env)
    env.update(
        {
            "PATH": _search_path(),
            "HOME": os.path.join(workdir, "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "DOCKER_HOST": docker_host,
            "DOCKER_CONFIG": os.path.join(workdir, "no-credentials"),
        }
    )
    return env


def push_environment(spec: BuildSpec, workdir: str, docker_host: str) -> dict[str, str]:
    """``docker push``'s whole environment: the registry credentials and nothing else."""
    return {
        "PATH": _search_path(),
        "HOME": os.path.join(workdir, "home"),
        "LANG": "C.UTF-8",
        "DOCKER_HOST": docker_host,
        "DOCKER_CONFIG": spec.registry_config_dir or os.path.join(workdir, "no-credentials"),
    }


def build_command(spec: BuildSpec, checkout: str, config_file: str) -> list[str]:
    """repo2docker's command line: the checkout as a local folder, never ``--push``."""
    options = Repo2DockerOptions(
        repo_url=checkout,
        ref=spec.repo2docker.ref,
        image_name=spec.repo2docker.image_name,
        push=False,
        user_id=spec.repo2docker.user_id,
        user_name=spec.repo2docker.user_name,
        config_file=config_file,
        extra_args=spec.repo2docker.extra_args,
    )
    return [*spec.repo2docker_command, *build_args(options)]


def json_line(phase: str, message: str) -> str:
    """One repo2docker-protocol log line."""
    return json.dumps({"phase": phase, "message": message})


def failed_line(message: str, failure_class: FailureClass) -> str:
    """The line that ends a failed build pod's log: a ``failed`` line with the class."""
    return json.dumps(
        {"phase": Phase.FAILED.value, "message": message, "failure_class": failure_class.value}
    )


def relayed(line: str) -> str | None:
    """``line`` if it is a JSON object (repo2docker's log), else ``None`` (dropped)."""
    stripped = line.rstrip("\r\n")
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    return stripped if isinstance(data, dict) else None


async def _run(
    argv: Sequence[str], env: dict[str, str], cwd: str, on_line: Callable[[str], None]
) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        limit=MAX_LINE_BYTES,
    )
    assert proc.stdout is not None
    try:
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                raw = await proc.stdout.read(MAX_LINE_BYTES)
            if not raw:
                break
            on_line(raw.decode(errors="replace"))
        return await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class PodBuild:
    """Runs one build pod's three steps, printing repo2docker JSON log lines with ``out``."""

    def __init__(self, spec: BuildSpec, environ: Mapping[str, str], out: Print) -> None:
        self.spec = spec
        self.environ = environ
        self.out = out
        self.docker_host = environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    def emit(self, event: BuildEvent) -> None:
        self.out(json_line(event.phase or Phase.UNKNOWN, event.message))

    def source(self) -> Source:
        credential = self.environ.get(GIT_CREDENTIAL_ENV) or None
        r2d = self.spec.repo2docker
        return Source(r2d.repo_url, r2d.ref, self.spec.content_provider, credential)

    async def run(self, workdir: str) -> None:
        """Fetch, build and (if the spec says so) push, in ``workdir``."""
        for folder in ("home", "no-credentials", "config"):
            os.makedirs(os.path.join(workdir, folder), mode=0o700)
        settings = FetchSettings(
            timeout=self.spec.fetch_timeout, max_bytes=self.spec.max_checkout_bytes
        )
        # Fetch diagnostics are for an operator's log; a pod's log is the user's.
        checkout = await Fetcher(settings, lambda text: None).fetch(
            self.source(), workdir, self.emit
        )
        await self.build(workdir, checkout)
        if self.spec.repo2docker.push:
            await self.push(workdir)

    async def build(self, workdir: str, checkout: str) -> None:
        config_file = os.path.join(workdir, "config", "repo2docker_config.py")
        with open(config_file, "w") as f:
            f.write(repo2docker_config(self.spec.repo2docker.config_file))

        reported: str | None = None
        classifier = OutputClassifier(Step.BUILD)

        def relay(line: str) -> None:
            nonlocal reported
            kept = relayed(line)
            if kept is None:
                classifier.feed(line)
                return
            data = json.loads(kept)
            message = data.get("message")
            message = message if isinstance(message, str) else ""
            classifier.feed(message)
            if data.get("phase") in ("failed", "failure"):
                reported = message
            else:
                self.out(kept)

        code = await _run(
            build_command(self.spec, checkout, config_file),
            build_environment(self.spec, workdir, self.docker_host),
            os.path.join(workdir, "home"),
            relay,
        )
        if code != 0:
            failure_class = classifier.classify(code)
            if reported is not None:
                raise Reported(reported, failure_class=failure_class)
            raise BuildFailed(BUILD_STOPPED.format(code=code), failure_class=failure_class)

    async def push(self, workdir: str) -> None:
        image = self.spec.repo2docker.image_name
        self.emit(BuildEvent(Phase.PUSHING, f"Pushing {image}...\n"))
        classifier = OutputClassifier(Step.PUSH)

        def relay(line: str) -> None:
            classifier.feed(line)
            self.emit(BuildEvent(Phase.PUSHING, line))

        code = await _run(
            ["docker", "push", "--", image],
            push_environment(self.spec, workdir, self.docker_host),
            os.path.join(workdir, "home"),
            relay,
        )
        if code != 0:
            raise BuildFailed(PUSH_FAILED, failure_class=classifier.classify(code))


def main(argv: Sequence[str], environ: Mapping[str, str], out: Print = print) -> int:
    """Run a build pod's build; the exit status (0 when it succeeded)."""
    try:
        spec = read_spec(argv, environ)
    except InvalidSpec:
        out(json_line(Phase.FAILED, INVALID_SPEC))
        return 2
    workdir = tempfile.mkdtemp(prefix="binderhub-build-", dir=environ.get("TMPDIR") or "/tmp")
    try:
        asyncio.run(PodBuild(spec, environ, out).run(workdir))
    except Reported as e:
        out(failed_line(e.message, e.failure_class))
        return 1
    except BuildFailed as e:
        # The service's own user-facing text, then the fixed end of a failed build.
        out(json.dumps({"message": str(e)}))
        out(failed_line(FAILED, e.failure_class))
        return 1
    except Exception:
        out(failed_line(UNEXPECTED, FailureClass.UNKNOWN))
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ, lambda line: print(line, flush=True)))
