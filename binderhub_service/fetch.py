"""The fetch step of a build: the service puts a repository in the build's own directory.

Fetching is the one step that holds a clone credential, so the service runs it
itself, with processes whose environment is built from scratch (nothing of the
service's own environment), bounded in time and size:

- git hosts (``git``, ``gh``, ``gl``, ``gist``): ``git`` with only the URL's own
  transport allowed (``https``, ``http`` or ``git``; never ``ssh``, ``file`` or
  remote helpers), no submodules, no system or global configuration, no prompts,
  the credential (when the request has one) scoped to the repository's origin,
  then a checkout of the exact commit resolved;
- record hosts (Zenodo, Figshare, Dataverse, HydroShare, CKAN): repo2docker's own
  content provider, in a child process (:mod:`binderhub_service.content_fetch`).

Then :func:`~binderhub_service.checkout.check_checkout` refuses links that leave
the checkout and :func:`~binderhub_service.dockerfile.check_dockerfiles` refuses
``ADD`` of remote URLs, before anything is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .checkout import CheckoutTooLarge, check_checkout, check_size, tree_size
from .dockerfile import check_dockerfiles
from .errors import BuildFailed
from .events import BuildEvent, Phase
from .failures import FailureClass, Step, classify_output
from .git_credentials import git_credential_env
from .redact import redact_url
from .repo2docker import GIT_CONTENT_PROVIDER

# Transports a clone may use: the URL's own scheme, when it is one of these.
GIT_SCHEMES = frozenset({"https", "http", "git"})
# repo2docker content providers that fetch records (run by content_fetch).
RECORD_CONTENT_PROVIDERS = frozenset(
    f"repo2docker.contentproviders.{name}"
    for name in ("Zenodo", "Figshare", "Dataverse", "Hydroshare", "CKAN")
)
# The search path of every fetch process (nothing of the service's PATH).
FETCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How much of a fetch process's own diagnostics is kept for the service log.
MAX_DIAGNOSTICS = 16 * 1024
# How often the checkout's size is measured while a fetch runs (seconds).
SIZE_CHECK_INTERVAL = 1.0

CheckURL = Callable[[str], Awaitable[None]]
EmitFunc = Callable[[BuildEvent], None]


class FetchFailed(BuildFailed):
    """The repository could not be fetched; nothing was built."""

    failure_class = FailureClass.INVALID_REPOSITORY


@dataclass(frozen=True)
class FetchSettings:
    """The operator's bounds for one fetch, and where to record its processes."""

    git_executable: str = "git"
    timeout: float = 600.0
    max_bytes: int = 10 * 2**30
    # Called with each fetch process's pid as it starts (for recovery after a crash).
    on_start: Callable[[int], None] = field(default=lambda pid: None)


@dataclass(frozen=True)
class Source:
    """What to fetch: a validated URL at a resolved ref, by one content provider."""

    url: str
    ref: str
    content_provider: str
    credential: str | None = field(default=None, repr=False)


def is_git(content_providers: Sequence[str]) -> bool:
    """Whether a request's content providers name git (a clone) rather than a record host."""
    return tuple(content_providers) in ((), (GIT_CONTENT_PROVIDER,))


def source_provider(content_providers: Sequence[str]) -> str:
    """The one content provider that fetches a request's repository (git unless a record host)."""
    return GIT_CONTENT_PROVIDER if is_git(content_providers) else content_providers[0]


def git_protocol_config(url: str) -> list[str]:
    """``git -c`` options allowing only ``url``'s own transport, or raise :class:`FetchFailed`."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in GIT_SCHEMES:
        raise FetchFailed(
            f"Repositories are fetched over {', '.join(sorted(GIT_SCHEMES))} only, "
            f"not {scheme or 'this kind of address'}."
        )
    return ["-c", "protocol.allow=never", "-c", f"protocol.{scheme}.allow=always"]


def git_options(url: str) -> list[str]:
    """Options of every git command of a clone: transport, redirects, submodules, hooks."""
    return [
        *git_protocol_config(url),
        # A redirect could lead anywhere: the URL checked is the URL fetched.
        "-c",
        "http.followRedirects=false",
        "-c",
        "submodule.recurse=false",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.symlinks=true",
        "-c",
        "advice.detachedHead=false",
    ]


def git_environment(home: str, url: str, credential: str | None) -> dict[str, str]:
    """The whole environment of a clone: nothing of the service's, the credential if any."""
    env = {
        "PATH": FETCH_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    if credential:
        env.update(git_credential_env(credential, url))
    return env


def clone_commands(git: str, url: str, ref: str, dest: str) -> list[list[str]]:
    """The git commands that put commit ``ref`` of ``url`` in ``dest``, in order.

    The first fetch asks for the one commit (servers allowing it answer with just
    that); :func:`fallback_fetch_command` fetches every ref when it is refused.
    """
    options = git_options(url)
    return [
        [git, *options, "init", "--quiet", "--template=", "--", dest],
        [
            git,
            *options,
            "-C",
            dest,
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--no-recurse-submodules",
            "--",
            url,
            ref,
        ],
    ]


def fallback_fetch_command(git: str, url: str, dest: str) -> list[str]:
    """Fetch every branch, tag and other ref, for servers that refuse a commit by id."""
    return [
        git,
        *git_options(url),
        "-C",
        dest,
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-recurse-submodules",
        "--",
        url,
        "+refs/*:refs/fetched/*",
    ]


def checkout_command(git: str, url: str, ref: str, dest: str) -> list[str]:
    return [git, *git_options(url), "-C", dest, "checkout", "--quiet", "--detach", ref, "--"]


def content_environment(home: str) -> dict[str, str]:
    """The whole environment of a record fetch: nothing of the service's."""
    return {"PATH": FETCH_PATH, "HOME": home, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _watch_size(dest: str, limit: int) -> None:
    """Return once the files below ``dest`` take more than ``limit`` bytes."""
    while True:
        await asyncio.sleep(SIZE_CHECK_INTERVAL)
        if os.path.isdir(dest) and await asyncio.to_thread(tree_size, dest, limit) > limit:
            return


async def run_fetch_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    dest: str,
    settings: FetchSettings,
    stdin: bytes = b"",
    on_line: Callable[[str], None] = lambda line: None,
) -> tuple[int, str]:
    """Run one fetch process in its own process group, bounded in time and in ``dest``'s size.

    ``on_line`` gets each line of its standard output; returns the exit code and
    the start of its standard error (diagnostics for the service log).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    settings.on_start(proc.pid)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    stdout, stderr = proc.stdout, proc.stderr

    async def read_stdout() -> None:
        while line := await stdout.readline():
            on_line(line.decode(errors="replace"))

    async def read_stderr() -> bytes:
        kept = b""
        while chunk := await stderr.read(65536):
            kept = (kept + chunk)[:MAX_DIAGNOSTICS]
        return kept

    async def read_all() -> bytes:
        _, diagnostics = await asyncio.gather(read_stdout(), read_stderr())
        return diagnostics

    reading = asyncio.ensure_future(read_all())
    size = asyncio.ensure_future(_watch_size(dest, settings.max_bytes))
    try:
        async with asyncio.timeout(settings.timeout):
            done, _ = await asyncio.wait([reading, size], return_when=asyncio.FIRST_COMPLETED)
        if size in done:
            raise CheckoutTooLarge(
                "The repository is larger than this service builds "
                f"({settings.max_bytes / 2**20:g} MiB)."
            )
        diagnostics = reading.result()
        return await proc.wait(), diagnostics.decode(errors="replace")
    except TimeoutError:
        raise FetchFailed(
            f"Fetching the repository took longer than {settings.timeout:g} seconds, the "
            "limit for fetching; its host may not be answering.",
            failure_class=FailureClass.TIMEOUT,
        ) from None
    finally:
        size.cancel()
        if proc.returncode is None:
            await _kill_group(proc)
        reading.cancel()


class Fetcher:
    """Runs the fetch step of one build into its checkout directory.

    ``check_url`` (optional) is awaited with the clone URL before any connection
    is made and raises to refuse it: the one place where the operator's network
    rules apply to a clone. ``log`` receives diagnostics (never shown to users).
    """

    def __init__(
        self,
        settings: FetchSettings,
        log: Callable[[str], None],
        check_url: CheckURL | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.check_url = check_url

    async def fetch(self, source: Source, workdir: str, emit: EmitFunc) -> str:
        """Fetch ``source`` into a new ``checkout`` folder of ``workdir``; return its path.

        Raises :class:`~binderhub_service.errors.BuildFailed` (with a user-facing
        message) when it cannot be fetched or holds what no build may read.
        """
        dest = os.path.join(workdir, "checkout")
        home = os.path.join(workdir, "home")
        os.makedirs(home, mode=0o700, exist_ok=True)
        shown = redact_url(source.url)
        emit(BuildEvent(Phase.FETCHING, f"Fetching {shown} at {source.ref}...\n"))
        if source.content_provider == GIT_CONTENT_PROVIDER:
            await self._clone(source, dest, home)
        elif source.content_provider in RECORD_CONTENT_PROVIDERS:
            os.makedirs(dest, mode=0o700)
            await self._fetch_record(source, dest, home, emit)
        else:
            raise FetchFailed("This kind of repository cannot be fetched here.")
        # The watch while fetching samples; this counts what was written in the end.
        await asyncio.to_thread(check_size, dest, self.settings.max_bytes)
        await asyncio.to_thread(check_checkout, dest)
        await asyncio.to_thread(check_dockerfiles, dest)
        emit(BuildEvent(Phase.FETCHING, "Fetched the repository.\n"))
        return dest

    async def _run_git(
        self, what: str, argv: list[str], env: dict[str, str], dest: str, home: str
    ) -> str | None:
        """Run one git command; None when it succeeded, else its diagnostics."""
        code, diagnostics = await run_fetch_process(
            argv, env=env, cwd=home, dest=dest, settings=self.settings
        )
        if code == 0:
            return None
        self.log(f"git {what} exited with {code}: {diagnostics.strip()[-2000:]}")
        return diagnostics

    async def _clone(self, source: Source, dest: str, home: str) -> None:
        git = self.settings.git_executable
        if self.check_url is not None:
            await self.check_url(source.url)
        env = git_environment(home, source.url, source.credential)
        shown = redact_url(source.url)

        def failed(diagnostics: str) -> FetchFailed:
            failure_class = classify_output(Step.FETCH, diagnostics.splitlines())
            if failure_class is FailureClass.NETWORK:
                return FetchFailed(
                    f"Could not fetch {shown}: its host could not be reached.",
                    failure_class=failure_class,
                )
            return FetchFailed(
                f"Could not fetch {shown} at {source.ref}: check that the "
                "repository and the commit exist and can be read.",
                failure_class=failure_class,
            )

        init, fetch_one = clone_commands(git, source.url, source.ref, dest)
        # Creating the repository needs no credential.
        plain = git_environment(home, source.url, None)
        if (diagnostics := await self._run_git("init", init, plain, dest, home)) is not None:
            raise failed(diagnostics)
        if await self._run_git("fetch", fetch_one, env, dest, home) is not None:
            fallback = fallback_fetch_command(git, source.url, dest)
            diagnostics = await self._run_git("fetch (all refs)", fallback, env, dest, home)
            if diagnostics is not None:
                raise failed(diagnostics)
        checkout = checkout_command(git, source.url, source.ref, dest)
        diagnostics = await self._run_git("checkout", checkout, plain, dest, home)
        if diagnostics is not None:
            raise failed(diagnostics)

    async def _fetch_record(self, source: Source, dest: str, home: str, emit: EmitFunc) -> None:
        def relay(line: str) -> None:
            try:
                message = json.loads(line).get("message", "")
            except (ValueError, AttributeError):
                return
            if isinstance(message, str) and message:
                emit(BuildEvent(Phase.FETCHING, message.replace(dest, ".")))

        request = {"provider": source.content_provider, "url": source.url, "output_dir": dest}
        code, diagnostics = await run_fetch_process(
            [sys.executable, "-m", "binderhub_service.content_fetch"],
            env=content_environment(home),
            cwd=home,
            dest=dest,
            settings=self.settings,
            stdin=json.dumps(request).encode(),
            on_line=relay,
        )
        if code != 0:
            self.log(f"record fetch exited with {code}: {diagnostics.strip()[-2000:]}")
            raise FetchFailed(
                f"Could not fetch {redact_url(source.url)}: check that the record exists "
                "and is public.",
                failure_class=classify_output(Step.FETCH, diagnostics.splitlines()),
            )
