"""The service's application: configuration, composition and lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import urllib.parse
from typing import Any

from jupyterhub.traitlets import EntryPointType
from sqlalchemy.exc import SQLAlchemyError
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Enum, Float, Integer, TraitError, Type, Unicode, default, validate
from traitlets.config import Application

from . import __version__
from .auth import AuthConfigError, ServiceAuth
from .build_requests import BuildRequests
from .builds import BuildManager
from .engine_storage import BuildHostStorage
from .errors import ServiceError
from .executors.base import BuildExecutor
from .executors.local import LocalDockerExecutor
from .gc import GarbageCollector, GcRunner
from .handlers.api import ApiContext, api_handlers
from .handlers.base import NotFoundHandler
from .handlers.gc import GcHandler
from .handlers.health import HealthHandler, LivenessHandler, MetricsHandler, VersionsHandler
from .handlers.launch import LaunchBuildHandler, launch_handlers
from .handlers.login import LoginHandler, OAuthCallbackHandler
from .handlers.page import page_handlers
from .handlers.repoproviders import RepoProvidersHandler
from .health import HealthChecker
from .hub_groups import HubGroups
from .images import FoundImageCache, ImageLookup
from .launch import Launcher
from .limits import UserLimits
from .log import log_request
from .naming import split_image_name
from .netguard import check_url
from .providers.catalog import DEFAULT_PROVIDERS, RepoProviderCatalog
from .redact import Redactor
from .registry import DockerRegistry
from .restart import reconcile
from .saved_images import SavedImages
from .startup import (
    ConfigError,
    bind,
    check_settings,
    executor_names,
    load_config_file,
    trait_error_message,
)
from .store import BuildRecorder, Store


class ExecutorClass(EntryPointType):
    """``executor_class``: an executor's entry-point name or a BuildExecutor subclass.

    A value that is neither is refused with the installed choices named.
    """

    def _resolve_string(self, string: str) -> Any:
        registry = self.load_entry_points()
        if string.lower() in registry:
            return registry[string.lower()].load()
        return super()._resolve_string(string)

    def validate(self, obj: Any, value: Any) -> Any:
        try:
            return super().validate(obj, value)
        except TraitError:
            choices = ", ".join(repr(name) for name in executor_names())
            raise TraitError(
                f"c.BinderHubService.executor_class = {value!r} is not valid: choose one of "
                f"{choices}, or the import path of a BuildExecutor subclass."
            ) from None


class BinderHubService(Application):
    """A standalone image-build service for JupyterHub."""

    name = "binderhub-service"
    version = __version__
    description = """Build container images from code repositories with repo2docker,
    streaming every log line to clients over Server-Sent Events."""

    examples = """
    binderhub-service --config binderhub_service_config.py
    binderhub-service --generate-config
    """

    aliases = {
        "config": "BinderHubService.config_file",
        "ip": "BinderHubService.ip",
        "port": "BinderHubService.port",
        "log-level": "BinderHubService.log_level",
    }

    subcommands = {
        "gc": (
            "binderhub_service.gc_command.GcApp",
            "Delete registry images nobody uses (see c.GarbageCollector), then exit.",
        ),
    }

    flags = {
        "generate-config": (
            {"BinderHubService": {"generate_config": True}},
            "Write a config file with every option documented, then exit.",
        ),
        "debug": ({"BinderHubService": {"log_level": 10}}, "Log at debug level."),
    }

    config_file = Unicode(
        "binderhub_service_config.py",
        help="""The Python config file to load (and the file --generate-config writes).
        Default ``binderhub_service_config.py`` in the working directory, read only when it
        exists; a file named with ``--config`` must exist.""",
    ).tag(config=True)

    log_level = Enum(
        (0, 10, 20, 30, 40, 50, "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"),
        default_value=logging.INFO,
        help="""Log level, by name or number: DEBUG (10), INFO (20), WARN (30), ERROR (40),
        CRITICAL (50). Default INFO (20). Example: ``--log-level=DEBUG``.""",
    ).tag(config=True)

    log_format = Unicode(
        "[%(asctime)s.%(msecs)03d %(name)s] %(levelname)s | %(message)s",
        help="""Format of log lines (Python ``logging``), timestamp first. Default
        ``[%(asctime)s.%(msecs)03d %(name)s] %(levelname)s | %(message)s``.""",
    ).tag(config=True)

    generate_config = Bool(False, help="Write the config file, then exit.").tag(config=True)

    ip = Unicode(
        help="""Address to listen on, e.g. ``0.0.0.0`` for every interface. Default: the
        host of ``JUPYTERHUB_SERVICE_URL`` when JupyterHub starts the service, else
        ``127.0.0.1``.""",
    ).tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        return self._service_url().hostname or "127.0.0.1"

    port = Integer(
        help="""TCP port to listen on, 1 to 65535. Default: the port of
        ``JUPYTERHUB_SERVICE_URL`` when JupyterHub starts the service, else 8585.""",
    ).tag(config=True)

    @default("port")
    def _default_port(self) -> int:
        return self._service_url().port or 8585

    base_url = Unicode(
        help="""URL prefix every route is served under, e.g. ``/services/binder/``.
        Default: ``JUPYTERHUB_SERVICE_PREFIX`` when run by JupyterHub, else ``/``.""",
    ).tag(config=True)

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    @validate("base_url")
    def _valid_base_url(self, proposal: dict[str, Any]) -> str:
        value = "/" + proposal["value"].strip("/") + "/"
        return value.replace("//", "/")

    image_prefix = Unicode(
        help="""Prefix of every image name, registry host included, e.g.
        ``registry.example.org/binder-``. Default: ``<registry host>/binder-`` when a
        registry is configured, else ``binder-``.""",
    ).tag(config=True)

    @default("image_prefix")
    def _default_image_prefix(self) -> str:
        host = urllib.parse.urlsplit(self.registry.url).netloc if self.registry.url else ""
        return f"{host}/binder-" if host else "binder-"

    use_registry = Bool(
        help="""Push images to the registry (``DockerRegistry.url``) and look for built images
        there. Default: on when a registry URL is configured. Off keeps images in the local
        container engine (for single-machine hubs with DockerSpawner).""",
    ).tag(config=True)

    @default("use_registry")
    def _default_use_registry(self) -> bool:
        return bool(self.registry.url)

    executor_class = ExecutorClass(
        default_value="local",
        klass=BuildExecutor,
        entry_point_group="binderhub_service.executors",
        help="""Where builds run: ``local`` (repo2docker on this machine's container engine)
        or ``kubernetes`` (build pods, configured with ``c.KubernetesExecutor``), or the
        import path of a BuildExecutor subclass. Default ``local``.""",
    ).tag(config=True)

    found_image_cache_seconds = Float(
        60.0,
        help="""Seconds an image found in the registry (or engine) is remembered, so
        repeated requests for it need no registry call. Images are named by commit and
        do not change; an image deleted by hand may still be reported found for this
        long. 0 asks every time. Default 60.""",
    ).tag(config=True)

    resolved_ref_seconds = Float(
        0.0,
        help="""Seconds a resolved ref (a branch or tag resolved to its commit) is reused for
        identical requests, so a crowd on one link costs one lookup of the repository even
        when its requests do not arrive together (identical lookups in flight at once are
        always shared). A branch pushed to meanwhile is built at its older commit for at most
        this long. 0 (the default) resolves every request afresh. Example: 10.""",
    ).tag(config=True)

    keepalive_interval = Float(
        25.0,
        help="Seconds between keepalive comments on a quiet event stream. Default 25.",
    ).tag(config=True)

    data_dir = Unicode(
        help="""Directory for the service's own files, such as the default SQLite database.
        Created at start. Default: ``$BINDERHUB_SERVICE_DATA_DIR``, else
        ``./binderhub-service-data``.""",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("BINDERHUB_SERVICE_DATA_DIR", "binderhub-service-data")

    db_url = Unicode(
        help="""Database of build records, build logs and saved images: an async SQLAlchemy
        URL, e.g. ``postgresql+asyncpg://binder:secret@db.example.org/binder``. Default:
        SQLite, ``sqlite+aiosqlite:///<data_dir>/binderhub-service.sqlite``.""",
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        path = os.path.abspath(os.path.join(self.data_dir, "binderhub-service.sqlite"))
        return f"sqlite+aiosqlite:///{path}"

    log_retention_days = Float(
        30.0,
        help="""Days a finished build's log is kept in the database (the build's record
        stays). 0 keeps logs forever. Default 30.""",
    ).tag(config=True)

    auth_enabled = Bool(
        True,
        help="""Authenticate every request with the JupyterHub this service belongs to (hub
        tokens, OAuth login) and authorise by hub scopes (see ``ServiceAuth``). Default on:
        it needs the ``JUPYTERHUB_*`` environment JupyterHub gives a managed service, and
        the service refuses to start without it. Set False to run without authentication
        (anyone who reaches the service may build; a warning is logged at start).""",
    ).tag(config=True)

    authenticator_class = Type(
        ServiceAuth,
        klass=ServiceAuth,
        help="""The class that says who sends each request (its ``authenticate`` method):
        a subclass of ``ServiceAuth``. Default ``ServiceAuth``, the hub's tokens and
        logins (or, with ``auth_enabled = False``, everyone anonymous). Example: a
        subclass that also trusts a header set by an authenticating proxy in front.""",
    ).tag(config=True)

    tornado_settings = Dict(
        help="Extra settings for the Tornado application, e.g. ``{'compress_response': True}``.",
    ).tag(config=True)

    trust_xheaders = Bool(
        False,
        help="""Take the client's address from ``X-Forwarded-For``/``X-Real-Ip`` (and the scheme
        from ``X-Forwarded-Proto``). Default off: any client could send these headers and
        so escape per-address limits. Turn it on only behind a proxy that sets them (e.g.
        JupyterHub's configurable-http-proxy or an ingress), and make sure clients cannot
        reach the service past that proxy.""",
    ).tag(config=True)

    max_request_body_bytes = Integer(
        16 * 1024,
        help="""Largest request body accepted, in bytes. Larger requests are refused (400)
        from their headers, before authentication and before the body is read. Default
        16384 (16 KiB); build requests and saved images need far less.""",
    ).tag(config=True)

    idle_connection_timeout = Float(
        60.0,
        help="""Seconds a connection may wait for a request's headers (a new connection's
        first request included) before it is closed. Default 60.""",
    ).tag(config=True)

    body_timeout = Float(
        30.0,
        help="""Seconds a client may take to send a request's body before the connection is
        closed. Default 30.""",
    ).tag(config=True)

    classes = [
        BuildHostStorage,
        BuildManager,
        BuildRecorder,
        DockerRegistry,
        GarbageCollector,
        HealthChecker,
        HubGroups,
        Launcher,
        LocalDockerExecutor,
        RepoProviderCatalog,
        *DEFAULT_PROVIDERS.values(),
        SavedImages,
        ServiceAuth,
        UserLimits,
    ]

    def _service_url(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))

    def all_classes(self) -> list[type]:
        """Every configurable class, the executors loaded only when chosen included."""
        from .executors.kubernetes import KubernetesExecutor

        return [*self.classes, KubernetesExecutor]

    def emit_help(self, classes: bool = False) -> Any:
        if classes:
            self.classes = self.all_classes()
        return super().emit_help(classes)

    def generate_config_file(self, classes: Any = None) -> str:
        return super().generate_config_file(self.all_classes() if classes is None else classes)

    def initialize(self, argv: list[str] | None = None) -> None:
        """Load and check the configuration, then build every part; exit 1 on a bad value."""
        try:
            self._initialize(argv)
        except (ConfigError, TraitError) as e:
            self.log.critical("%s", trait_error_message(e))
            self.exit(1)

    def _initialize(self, argv: list[str] | None) -> None:
        # traitlets' parse_command_line reports a bad value itself ("Bad config
        # encountered ..."); its undecorated form lets initialize() say it in one line.
        Application.parse_command_line.__wrapped__(self, argv)  # type: ignore[attr-defined]
        if self.generate_config or self.subapp is not None:
            return
        explicit = "config_file" in self.cli_config.get("BinderHubService", {})
        load_config_file(self, self.config_file, explicit)
        self.init_logging()
        self.init_registry()
        self.init_executor()
        check_settings(self)
        self.init_auth()
        self.init_images()
        self.init_providers()
        self.init_redactor()
        self.init_store()
        self.init_builds()
        self.init_build_host()
        self.init_gc()
        self.init_health()
        self.init_tornado_app()

    def init_logging(self) -> None:
        """Send Tornado's access and error logs through this application's handlers."""
        self.log.propagate = False
        for name in ("tornado.access", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.propagate = True
            logger.parent = self.log
            logger.setLevel(self.log.level)

    def init_auth(self) -> None:
        try:
            self.auth = self.authenticator_class(
                parent=self, enabled=self.auth_enabled, base_url=self.base_url
            )
        except AuthConfigError as e:
            raise ConfigError(str(e)) from None
        if not self.auth_enabled:
            self.log.warning(
                "Authentication is off (auth_enabled = False): anyone who can reach this "
                "service can build images. Limits apply per client address."
            )
        self.user_limits = UserLimits(parent=self)

    def init_registry(self) -> None:
        self.registry = DockerRegistry(parent=self)
        if self.use_registry and not self.registry.url:
            self.log.critical(
                "use_registry is on but no registry URL is set: set c.DockerRegistry.url "
                "(the Helm chart's registry.url), e.g. https://registry.example.org, "
                "or set c.BinderHubService.use_registry = False"
            )
            self.exit(1)

    def init_executor(self) -> None:
        # Local builds keep their working directories in the data directory, so a
        # restart after a crash can find (and stop) what was left running.
        local = self.config.LocalDockerExecutor
        if "work_dir" not in local:
            local.work_dir = os.path.join(os.path.abspath(self.data_dir), "builds")
        self.executor: BuildExecutor = self.executor_class(parent=self)
        if isinstance(self.executor, LocalDockerExecutor):
            # Only the push step, run by the service itself, reads the credentials.
            self.executor.push_docker_config = self.registry.docker_config_path

    def init_providers(self) -> None:
        self.catalog = RepoProviderCatalog(parent=self)
        if isinstance(self.executor, LocalDockerExecutor):
            self.executor.check_url = self._check_clone_url

    async def _check_clone_url(self, url: str) -> None:
        """Refuse a clone whose host lies in the catalog's denied networks."""
        await check_url(url, self.catalog.denied)

    def init_redactor(self) -> None:
        """Learn the secrets this service holds, to keep them out of its logs and records."""
        self.redactor = Redactor()
        self.redactor.add_from_environment()
        self.redactor.add_from(self.auth)
        if self.auth.hub_auth is not None:
            self.redactor.add(self.auth.hub_auth.api_token)
            self.redactor.add_from(self.auth.hub_auth)
        for configurable in (self.registry, self.executor, *self.catalog.providers.values()):
            self.redactor.add_from(configurable)
        try:
            with open(self.registry.docker_config_path) as f:
                self.redactor.add_docker_config(json.load(f))
        except (OSError, ValueError):
            pass
        log_filter = self.redactor.log_filter()
        for handler in self.log.handlers:
            handler.addFilter(log_filter)

    def init_store(self) -> None:
        self.store = Store(self.db_url)
        self.recorder = BuildRecorder(
            parent=self,
            store=self.store,
            executor_name=self.executor.name,
            builder_version=self.executor.builder_version(),
            log_retention_days=self.log_retention_days,
        )

    def init_builds(self) -> None:
        self.build_manager = BuildManager(
            parent=self, executor=self.executor, observers=[self.recorder], redactor=self.redactor
        )

    def init_build_host(self) -> None:
        """Without a registry, the local executor's image budget needs the records."""
        if isinstance(self.executor, LocalDockerExecutor) and not self.use_registry:
            storage = self.executor.storage
            storage.image_prefix = self.image_prefix
            storage.usage = self._local_image_usage
            storage.forget = self.images.forget

    async def _local_image_usage(self) -> tuple[set[str], dict[str, float]]:
        """Images to keep locally (saved, building) and when each was last used."""
        await self.recorder.written()
        usage = await self.store.image_usage(self.image_prefix)
        keep = {image.image for image in await self.store.list_images()}
        keep |= {name for name, (_, building) in usage.items() if building}
        return keep, {name: used for name, (used, _) in usage.items()}

    def init_gc(self) -> None:
        """Garbage collection on request (``POST api/v1/gc``), when images go to a registry."""
        self.gc_runner = None
        if self.use_registry:
            collector = GarbageCollector(parent=self)
            self.redactor.add(collector.hub_api_token)
            self.gc_runner = GcRunner(
                collector,
                self.registry,
                self.store,
                self.image_prefix,
                forget=self.images.forget,
                flush=self.recorder.written,
            )

    def start_gc_schedule(self) -> asyncio.Task[None] | None:
        """Garbage collection every ``GarbageCollector.interval_hours``, when set."""
        if self.gc_runner is None or not self.gc_runner.collector.interval_hours:
            return None
        collector = self.gc_runner.collector
        self.log.info(
            "Garbage collection every %g hours (%s)",
            collector.interval_hours,
            "dry run" if collector.scheduled_dry_run else "deleting",
        )
        return asyncio.create_task(
            self.gc_runner.run_every(collector.interval_hours * 3600, collector.scheduled_dry_run)
        )

    def init_health(self) -> None:
        checks = {"executor": self.executor.health}
        if self.use_registry:
            checks["registry"] = self.registry.health
        self.health_checker = HealthChecker(checks, parent=self)

    def init_images(self) -> None:
        """Where built images are looked for: the registry, or the engine builds ran on."""
        lookup: ImageLookup = self.registry if self.use_registry else self.executor
        self.images = FoundImageCache(lookup, self.found_image_cache_seconds)
        hosts = None
        if self.use_registry:
            prefix_host = split_image_name(self.image_prefix + "x")[0]
            hosts = frozenset(h for h in (self.registry.host, prefix_host) if h)
        self.saved_images = SavedImages(self.images, hosts, parent=self)

    def init_tornado_app(self) -> None:
        base = self.base_url
        versions = {
            "builder": f"repo2docker {self.executor.builder_version()}",
            "binderhub-service": __version__,
        }
        requests = BuildRequests(
            manager=self.build_manager,
            catalog=self.catalog,
            images=self.images,
            image_prefix=self.image_prefix,
            push=self.use_registry,
            recorder=self.recorder,
            user_limits=self.user_limits,
            resolved_ref_seconds=self.resolved_ref_seconds,
        )
        launcher = Launcher(parent=self)
        build_args = {
            "requests": requests,
            "keepalive_interval": self.keepalive_interval,
            "base_url": base,
            "launcher": launcher,
        }
        api = ApiContext(
            requests=requests,
            store=self.store,
            recorder=self.recorder,
            keepalive_interval=self.keepalive_interval,
            base_url=base,
            saved_images=self.saved_images,
        )
        handlers: list[Any] = [
            (base + "api/v1/gc", GcHandler, {"runner": self.gc_runner}),
            *api_handlers(api),
            *page_handlers(base),
            *launch_handlers(base, self.store, launcher, self.keepalive_interval),
            (base + r"build/([^/]+)/(.+)", LaunchBuildHandler, build_args),
            (base + "api/repoproviders", RepoProvidersHandler, {"catalog": self.catalog}),
            (base + "livez", LivenessHandler),
            (base + "health", HealthHandler, {"checker": self.health_checker}),
            (base + "versions", VersionsHandler, {"versions": versions}),
            (base + "metrics", MetricsHandler),
        ]
        if self.auth.hub_auth is not None:
            handlers += [
                (base + "oauth_callback", OAuthCallbackHandler, {"hub_auth": self.auth.hub_auth}),
                (base + "login", LoginHandler),
            ]
        settings = {
            "log_function": log_request,
            "default_handler_class": NotFoundHandler,
            "service_auth": self.auth,
            "user_limits": self.user_limits,
            **self.auth.tornado_settings(),
            **self.tornado_settings,
        }
        self.tornado_app = web.Application(handlers, **settings)

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        if self.generate_config:
            self.write_default_config()
            return
        try:
            sockets = bind(self.ip, self.port)
        except ConfigError as e:
            self.log.critical("%s", e)
            self.exit(1)
        asyncio.run(self.serve(sockets))

    def write_default_config(self) -> None:
        if os.path.exists(self.config_file):
            self.log.error("%s exists; not overwriting it.", self.config_file)
            self.exit(1)
        with open(self.config_file, "w") as f:
            f.write(self.generate_config_file())
        self.log.info("Wrote %s", self.config_file)

    def make_data_dir(self) -> None:
        """Create the data directory, readable by this service's user only (0700)."""
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        try:
            os.chmod(self.data_dir, 0o700)
        except PermissionError:
            # A volume mounted for the service (e.g. with a pod's fsGroup) may belong to
            # another user; its files stay readable by this user only.
            self.log.warning("Cannot make %s private to this user (mode 0700)", self.data_dir)

    async def start_store(self) -> None:
        """Open the database (migrating it), settle builds left unfinished, start recording."""
        self.make_data_dir()
        await self.store.open()
        self.log.info("Build records in %s", self.store.safe_url)
        await reconcile(self.store, self.build_manager, self.recorder, self.use_registry, self.log)
        self.recorder.start()

    async def stop_store(self) -> None:
        await self.recorder.close()
        await self.store.close()

    def http_server(self) -> HTTPServer:
        """The HTTP server of the Tornado app, with request bounds and timeouts."""
        return HTTPServer(
            self.tornado_app,
            xheaders=self.trust_xheaders,
            max_body_size=self.max_request_body_bytes,
            max_buffer_size=self.max_request_body_bytes + 128 * 1024,
            idle_connection_timeout=self.idle_connection_timeout,
            body_timeout=self.body_timeout,
        )

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Serve on ``sockets`` until SIGTERM or SIGINT, then stop builds and close."""
        try:
            await self.executor.prepare()
        except ServiceError as e:
            self.log.critical("%s", e.message)
            self.exit(1)
        # Records first: builds reattached are then not cleaned up as leftovers.
        try:
            await self.start_store()
        except (OSError, SQLAlchemyError) as e:
            self.log.critical(
                "Cannot open the database c.BinderHubService.db_url = %r: %s",
                self.store.safe_url,
                trait_error_message(e).split(" [SQL:")[0],
            )
            self.exit(1)
        await self.executor.recover()
        gc_task = self.start_gc_schedule()
        server = self.http_server()
        server.add_sockets(sockets)
        self.log.info(
            "binderhub-service %s listening on http://%s:%s%s (executor: %s, registry: %s)",
            __version__,
            self.ip,
            self.port,
            self.base_url,
            self.executor.name,
            self.registry.url if self.use_registry else "none, images stay in the local engine",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("Shutting down")
        if gc_task is not None:
            gc_task.cancel()
        server.stop()
        await self.build_manager.shutdown()
        await self.stop_store()
        await self.executor.shutdown()
        await server.close_all_connections()


main = BinderHubService.launch_instance
