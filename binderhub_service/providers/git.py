"""Any git repository by URL: ``git/<url-escaped URL>/<ref>``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import posixpath
import re
import resource
import urllib.parse

from traitlets import Dict, Int, List, Unicode, validate

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from ..git_credentials import credential_env_value, git_credential_env
from ..netguard import bare_host, git_network_options, literal_address
from ..redact import redact_url
from .base import RepoProvider, RepoSpec
from .validation import FULL_SHA, check_ref, check_repo_url, redact_text

#: Schemes ``allowed_schemes`` may name; ssh (the service's own keys) and remote
#: helpers are never allowed.
KNOWN_SCHEMES = frozenset({"https", "http", "git", "file"})
_DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418}
#: How much of git's error output is kept for the log.
MAX_STDERR_BYTES = 64 * 1024


def canonical_url(url: str) -> str:
    """One spelling of the repository a git URL names, for matching policy patterns.

    Lower-case host without userinfo, trailing dot or default port, IP
    literals in dotted form, ``git``/``http``/``https`` all as ``https``, the
    path unescaped without doubled slashes, a trailing slash or ``.git``.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return f"file://{posixpath.normpath(urllib.parse.unquote(parts.path) or '/')}"
    host = bare_host(parts.hostname or "")
    literal = literal_address(host)
    if literal is not None:
        host = f"[{literal}]" if literal.version == 6 else str(literal)
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InvalidSpec("The repository URL's host is not a valid host name.") from None
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", urllib.parse.unquote(parts.path)).rstrip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return f"https://{host}{path}"


def limit_data_segment(limit: int) -> None:
    """Cap the calling process's data segment at ``limit`` bytes (run in a child before exec)."""
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


async def read_capped(
    stream: asyncio.StreamReader, cap: int, drain: bool = False
) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of ``stream`` and whether it had more.

    Past the cap it stops at once, or with ``drain`` reads the rest to the end
    and drops it (so that the writer never blocks on a full pipe).
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(64 * 1024):
        if size + len(chunk) > cap:
            chunks.append(chunk[: cap - size])
            while drain and await stream.read(64 * 1024):
                pass
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def choose_ref(listing: str, ref: str) -> str | None:
    """Pick the commit ``ref`` names from ``git ls-remote`` output.

    Branches win over tags and a peeled tag (``^{}``, the commit an annotated
    tag points to) over the tag object itself; ``HEAD`` and full ref names such
    as ``refs/pull/1/head`` match exactly.
    """
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if FULL_SHA.match(sha) and name:
            refs[name] = sha
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref):
        if candidate in refs:
            return refs[candidate]
    return None


class GitRepoProvider(RepoProvider):
    """A repository at any git URL whose scheme is allowed."""

    prefix = "git"
    display_name = "Git repository"
    repo_label = "Arbitrary git repository URL"
    repo_placeholder = "example: https://git.example.org/project/repo.git"
    url_encode = True

    allowed_schemes = List(
        Unicode(),
        ["https", "git"],
        help="""URL schemes accepted for ``git`` specs. Default ``["https", "git"]``.

        Add ``"http"`` for plain-http servers, or ``"file"`` to build from paths on
        the service's machine (never on a shared service). ``ssh`` (which would
        use the service's own keys) and remote helpers such as ``ext::`` are
        always refused.
        """,
    ).tag(config=True)

    @validate("allowed_schemes")
    def _valid_schemes(self, proposal: dict) -> list[str]:
        schemes = [s.lower() for s in proposal["value"]]
        unknown = sorted(set(schemes) - KNOWN_SCHEMES)
        if unknown:
            raise ValueError(
                f"GitRepoProvider.allowed_schemes: {', '.join(unknown)} cannot be allowed; "
                f"choose from {', '.join(sorted(KNOWN_SCHEMES))}"
            )
        return schemes

    max_ref_listing_bytes = Int(
        1024 * 1024,
        help="""The most output of ``git ls-remote`` read when resolving a ref, in bytes.

        Only refs whose names end in the requested ref are listed; a server that
        advertises more than this is refused with a clear error (the service's
        memory stays bounded). Default 1048576 (1 MiB). Example: ``4 * 1024 * 1024``.
        """,
    ).tag(config=True)

    git_executable = Unicode("git", help="The git command used for `git ls-remote`.").tag(
        config=True
    )

    credentials_by_host = Dict(
        value_trait=Dict(value_trait=Unicode()),
        help="""Git credentials for private repositories, by host.

        ``{"git.example.org": {"username": "builder", "password": "TOKEN"}}``;
        a key may include a port (``"git.example.org:8443"``), which is tried
        first. Used for ``https`` (and ``http``) URLs both by `git ls-remote`
        and, through ``GIT_CREDENTIAL_ENV``, by repo2docker's clone; never put
        in URLs or on command lines. Default: none.
        """,
    ).tag(config=True)

    ls_remote_memory_limit = Int(
        256 * 1024 * 1024,
        help="""Memory (bytes of data segment, RLIMIT_DATA) a ``git ls-remote`` may use.

        git reads a server's whole list of refs before filtering it; a server
        advertising millions of refs would otherwise make it grow without
        bound. A listing that does not fit is refused like one over
        ``max_ref_listing_bytes``. Default 268435456 (256 MiB); 0 for no limit.
        """,
    ).tag(config=True)

    @validate("credentials_by_host")
    def _valid_credentials(self, proposal: dict) -> dict[str, dict[str, str]]:
        credentials = {}
        for host, entry in proposal["value"].items():
            username, password = entry.get("username", ""), entry.get("password", "")
            # Raises on values git's credential helper could not pass through.
            credential_env_value(username, password)
            credentials[host.lower()] = {"username": username, "password": password}
        return credentials

    def canonical_spec(self, repo: RepoSpec) -> str:
        return f"{urllib.parse.quote(canonical_url(repo.repo_url), safe='')}/{repo.ref}"

    def git_credentials(self, repo: RepoSpec) -> str | None:
        parts = urllib.parse.urlsplit(repo.repo_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return None
        candidates = [parts.hostname]
        if parts.port:
            candidates.insert(0, f"{parts.hostname}:{parts.port}")
        for host in candidates:
            entry = self.credentials_by_host.get(host)
            if entry:
                return credential_env_value(entry["username"], entry["password"])
        return None

    def parse(self, spec: str) -> RepoSpec:
        escaped_url, sep, escaped_ref = spec.partition("/")
        if not sep or not escaped_url or not escaped_ref:
            raise InvalidSpec(
                "A git spec looks like git/<url-escaped repository URL>/<ref>, "
                "e.g. git/https%3A%2F%2Fexample.org%2Frepo.git/main."
            )
        url = check_repo_url(urllib.parse.unquote(escaped_url), self.allowed_schemes)
        if urllib.parse.urlsplit(url).password is not None:
            raise InvalidSpec(
                "Repository URLs must not contain a password: the service's operator "
                "configures credentials for private repositories."
            )
        ref = check_ref(urllib.parse.unquote(escaped_ref))
        canonical_url(url)  # refuses hosts that are not host names
        slug = redact_url(url).split("://", 1)[1].rstrip("/")
        if slug.endswith(".git"):
            slug = slug[: -len(".git")]
        return RepoSpec(provider=self.prefix, spec=spec, repo_url=url, ref=ref, slug=slug)

    def _git_env(self, repo: RepoSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        credentials = self.git_credentials(repo)
        if credentials:
            env.update(git_credential_env(credentials, repo.repo_url))
        return env

    async def resolve_ref(self, repo: RepoSpec) -> str:
        if FULL_SHA.match(repo.ref):
            return repo.ref
        listing = await self._ls_remote(repo)
        sha = choose_ref(listing, repo.ref)
        if sha is None:
            raise RefNotFound(
                f"No branch, tag or ref named {repo.ref!r} in {redact_url(repo.repo_url)}."
            )
        return sha

    def _redact(self, text: str, repo: RepoSpec) -> str:
        """``text`` without the credentials of ``repo``'s URL or host."""
        text = redact_text(text, repo.repo_url)
        host = urllib.parse.urlsplit(repo.repo_url).hostname or ""
        for key, entry in self.credentials_by_host.items():
            if key.split(":")[0] == host:
                text = text.replace(entry["password"], "***")
        return text

    async def _pinning(self, repo: RepoSpec) -> list[str]:
        """Check the host (``file:`` has none) and return git options that keep git to it."""
        if urllib.parse.urlsplit(repo.repo_url).scheme.lower() == "file":
            return []
        return await git_network_options(repo.repo_url, self.denied)

    async def _ls_remote(self, repo: RepoSpec) -> str:
        url = repo.repo_url
        shown_url = redact_url(url)
        pinning = await self._pinning(repo)
        # Only the allowed transports may run, whatever git's own defaults are.
        protocol_config = ["-c", "protocol.allow=never"]
        for scheme in sorted(set(self.allowed_schemes)):
            protocol_config += ["-c", f"protocol.{scheme}.allow=always"]
        proc = await asyncio.create_subprocess_exec(
            self.git_executable,
            *protocol_config,
            *pinning,
            "ls-remote",
            "--",
            url,
            repo.ref,
            # An annotated tag's commit is listed only when asked for by this name.
            f"{repo.ref}^{{}}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._git_env(repo),
            preexec_fn=(
                functools.partial(limit_data_segment, self.ls_remote_memory_limit)
                if self.ls_remote_memory_limit > 0
                else None
            ),
        )
        assert proc.stdout is not None and proc.stderr is not None
        out_task = asyncio.ensure_future(read_capped(proc.stdout, self.max_ref_listing_bytes))
        err_task = asyncio.ensure_future(read_capped(proc.stderr, MAX_STDERR_BYTES, drain=True))
        try:
            async with asyncio.timeout(self.resolve_timeout):
                out, too_much = await out_task
                if too_much:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    # What the killed git left in the pipe, dropped (asyncio needs its end).
                    while await proc.stdout.read(64 * 1024):
                        pass
                err, _ = await err_task
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise UpstreamError(
                f"{shown_url} did not answer within {self.resolve_timeout:g} seconds; "
                "try again later."
            ) from None
        finally:
            for task in (out_task, err_task):
                task.cancel()
        if proc.returncode != 0 and b"Out of memory" in err:
            too_much = True
        if too_much:
            self.log.warning(
                "git ls-remote %s listed more refs than %d bytes or its memory limit hold",
                shown_url,
                self.max_ref_listing_bytes,
            )
            raise UpstreamError(
                f"{shown_url} lists too many refs named {repo.ref!r} to be resolved; "
                "ask for a full branch name (refs/heads/...) or a commit sha."
            )
        if proc.returncode != 0:
            self.log.warning(
                "git ls-remote %s failed with exit code %s: %s",
                shown_url,
                proc.returncode,
                self._redact(err.decode(errors="replace"), repo),
            )
            raise UpstreamError(
                f"Could not read the repository at {shown_url}: check that the URL is right "
                "and that the repository is public."
            )
        return out.decode(errors="replace")
