"""The service's application: configuration, composition and lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import urllib.parse
from typing import Any

from jupyterhub.traitlets import EntryPointType
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Float, Integer, Unicode, default, validate
from traitlets.config import Application, catch_config_error

from . import __version__
from .auth import AuthConfigError, ServiceAuth
from .build_requests import BuildRequests
from .builds import BuildManager
from .executors.base import BuildExecutor
from .executors.local import LocalDockerExecutor
from .handlers.api import ApiContext, api_handlers
from .handlers.build import BuildHandler
from .handlers.health import HealthHandler, LivenessHandler, MetricsHandler, VersionsHandler
from .handlers.login import LoginHandler, OAuthCallbackHandler
from .handlers.repoproviders import RepoProvidersHandler
from .health import HealthChecker
from .images import FoundImageCache, ImageLookup
from .limits import UserLimits
from .log import log_request
from .providers.catalog import DEFAULT_PROVIDERS, RepoProviderCatalog
from .registry import DockerRegistry
from .store import BuildRecorder, Store
from .store.reconcile import reconcile


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
        "log-level": "Application.log_level",
    }

    flags = {
        "generate-config": (
            {"BinderHubService": {"generate_config": True}},
            "Write a config file with every option documented, then exit.",
        ),
        "debug": ({"Application": {"log_level": 10}}, "Log at debug level."),
    }

    config_file = Unicode(
        "binderhub_service_config.py",
        help="The Python config file to load (and the file --generate-config writes).",
    ).tag(config=True)

    generate_config = Bool(False, help="Write the config file, then exit.").tag(config=True)

    ip = Unicode(
        help="""Address to listen on. Default: the host of ``JUPYTERHUB_SERVICE_URL`` when
        JupyterHub starts the service, else ``127.0.0.1``.""",
    ).tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        return self._service_url().hostname or "127.0.0.1"

    port = Integer(
        help="""Port to listen on. Default: the port of ``JUPYTERHUB_SERVICE_URL`` when
        JupyterHub starts the service, else 8585.""",
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

    executor_class = EntryPointType(
        default_value=LocalDockerExecutor,
        klass=BuildExecutor,
        entry_point_group="binderhub_service.executors",
        help="""Where builds run: ``local`` (repo2docker on this machine's container engine,
        the default) or ``kubernetes`` (build pods), or a BuildExecutor subclass.""",
    ).tag(config=True)

    found_image_cache_seconds = Float(
        60.0,
        help="""Seconds an image found in the registry (or engine) is remembered, so
        repeated requests for it need no registry call. Images are named by commit and
        do not change; an image deleted by hand may still be reported found for this
        long. 0 asks every time. Default 60.""",
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

    tornado_settings = Dict(
        help="Extra settings for the Tornado application, e.g. ``{'compress_response': True}``.",
    ).tag(config=True)

    classes = [
        BuildManager,
        BuildRecorder,
        DockerRegistry,
        HealthChecker,
        LocalDockerExecutor,
        RepoProviderCatalog,
        *DEFAULT_PROVIDERS.values(),
        ServiceAuth,
        UserLimits,
    ]

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    def _service_url(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.generate_config:
            return
        self.load_config_file(self.config_file)
        self.init_logging()
        self.init_auth()
        self.init_registry()
        self.init_executor()
        self.init_images()
        self.init_providers()
        self.init_store()
        self.init_builds()
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
            self.auth = ServiceAuth(parent=self, enabled=self.auth_enabled, base_url=self.base_url)
        except AuthConfigError as e:
            self.log.critical("%s", e)
            self.exit(1)
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

    def init_providers(self) -> None:
        self.catalog = RepoProviderCatalog(parent=self)

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
            parent=self, executor=self.executor, observers=[self.recorder]
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
            user_limits=self.user_limits,
        )
        build_args = {
            "requests": requests,
            "keepalive_interval": self.keepalive_interval,
            "base_url": base,
        }
        api = ApiContext(
            requests=requests,
            store=self.store,
            recorder=self.recorder,
            keepalive_interval=self.keepalive_interval,
            base_url=base,
        )
        handlers: list[Any] = [
            *api_handlers(api),
            (base + r"build/([^/]+)/(.+)", BuildHandler, build_args),
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
            "service_auth": self.auth,
            "user_limits": self.user_limits,
            **self.auth.tornado_settings(),
            **self.tornado_settings,
        }
        self.tornado_app = web.Application(handlers, **settings)

    def start(self) -> None:
        if self.generate_config:
            self.write_default_config()
            return
        asyncio.run(self.serve())

    def write_default_config(self) -> None:
        if os.path.exists(self.config_file):
            self.log.error("%s exists; not overwriting it.", self.config_file)
            self.exit(1)
        with open(self.config_file, "w") as f:
            f.write(self.generate_config_file())
        self.log.info("Wrote %s", self.config_file)

    async def start_store(self) -> None:
        """Open the database (migrating it), settle builds left unfinished, start recording."""
        os.makedirs(self.data_dir, exist_ok=True)
        await self.store.open()
        self.log.info("Build records in %s", self.store.safe_url)
        await reconcile(self.store, self.build_manager, self.recorder, self.use_registry, self.log)
        self.recorder.start()

    async def stop_store(self) -> None:
        await self.recorder.close()
        await self.store.close()

    async def serve(self) -> None:
        """Listen until SIGTERM or SIGINT, then stop builds and close."""
        # Records first: builds reattached are then not cleaned up as leftovers.
        await self.start_store()
        await self.executor.recover()
        server = HTTPServer(self.tornado_app, xheaders=True)
        server.listen(self.port, self.ip)
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
        server.stop()
        await self.build_manager.shutdown()
        await self.stop_store()
        await self.executor.shutdown()
        await server.close_all_connections()


main = BinderHubService.launch_instance
