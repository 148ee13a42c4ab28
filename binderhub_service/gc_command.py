"""``binderhub-service gc``: the garbage collector run once from the command line.

A composition root of its own, beside :mod:`binderhub_service.app`: it loads the
service's config file to find the registry, the image prefix and the database.
"""

from __future__ import annotations

import asyncio
import json

from traitlets import Bool, TraitError, Unicode
from traitlets.config import Application

from .app import BinderHubService
from .errors import UpstreamError
from .gc import GarbageCollector, GcError, GcReport
from .startup import ConfigError, load_config_file, trait_error_message
from .store import Store


class GcApp(Application):
    """``binderhub-service gc``: delete registry images nobody uses, once."""

    name = "binderhub-service-gc"
    description = """Delete images under the service's image_prefix from the registry,
    unless saved, building, young, recently used or among the last of their repository
    (see c.GarbageCollector)."""

    examples = """
    binderhub-service gc --config binderhub_service_config.py --dry-run
    binderhub-service gc --config binderhub_service_config.py --json
    """

    aliases = {"config": "GcApp.config_file"}
    flags = {
        "dry-run": ({"GcApp": {"dry_run": True}}, "Say what would be deleted; delete nothing."),
        "json": ({"GcApp": {"json": True}}, "Print the decisions as JSON."),
    }

    config_file = Unicode(
        "binderhub_service_config.py",
        help="The service's config file (it must exist). Default ``binderhub_service_config.py``.",
    ).tag(config=True)

    dry_run = Bool(False, help="Decide and report, delete nothing. Default off.").tag(config=True)

    json = Bool(
        False,
        help="""Print ``{"delete": [{"image": ..., "reason": ...}], "keep": [...]}``.
        Default off: one line per image.""",
    ).tag(config=True)

    def initialize(self, argv: list[str] | None = None) -> None:
        try:
            Application.parse_command_line.__wrapped__(self, argv)  # type: ignore[attr-defined]
            service = BinderHubService(log=self.log)
            load_config_file(service, self.config_file, explicit=True)
        except (ConfigError, TraitError) as e:
            self.log.critical("%s", trait_error_message(e))
            self.exit(1)
        service.init_registry()
        if not service.use_registry:
            self.log.critical("gc needs a registry: set c.DockerRegistry.url.")
            self.exit(1)
        self.registry = service.registry
        self.image_prefix = service.image_prefix
        self.store = Store(service.db_url)
        self.collector = GarbageCollector(parent=service)

    async def run(self) -> GcReport:
        await self.store.open()
        try:
            return await self.collector.collect(
                self.registry, self.store, self.image_prefix, dry_run=self.dry_run
            )
        finally:
            await self.store.close()

    def start(self) -> None:
        try:
            report = asyncio.run(self.run())
        except (GcError, UpstreamError) as e:
            self.log.critical("%s", e)
            self.exit(1)
        if self.json:
            print(json.dumps(report.as_json(), indent=2))
        else:
            for d in report.decisions:
                verb = "delete" if d.delete else "keep"
                print(f"{verb}\t{d.image.name}\t{d.reason}")
        if not self.dry_run:
            self.log.info(
                "Deleted %d image(s), %d bytes", len(report.deleted), report.deleted_bytes
            )
