"""Prometheus metrics.

Naming: metrics BinderHub also has keep BinderHub's names (``binderhub_*``) so
existing dashboards work; metrics of this service alone start with
``binderhub_service_``. Label values come from enums or the provider prefix
(a short, configured list), never from repositories, refs or users:
``failure_class`` is one of :class:`~binderhub_service.failures.FailureClass`'s
values, or empty for builds that succeeded.
"""

from __future__ import annotations

import enum

from prometheus_client import Counter, Gauge, Histogram


class BuildStatus(enum.StrEnum):
    """How a build ended, as a metric label."""

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


BUILD_TIME = Histogram(
    "binderhub_build_time_seconds",
    "Time taken by builds, from start to end, by how they ended",
    ["status"],
    buckets=[10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf")],
)

BUILD_COUNT = Counter(
    "binderhub_build_count",
    "Builds that ended, by how they ended, by provider and by why they failed",
    ["status", "provider", "failure_class"],
)

BUILD_RETRIES = Counter(
    "binderhub_service_build_retries",
    "Builds tried again after a failure that looked temporary, by that failure's class",
    ["failure_class"],
)

BUILDS_IN_PROGRESS = Gauge("binderhub_inprogress_builds", "Builds running now")

BUILD_QUEUE_LENGTH = Gauge(
    "binderhub_service_build_queue_length", "Builds waiting for a free build slot"
)

IMAGE_FOUND_COUNT = Counter(
    "binderhub_service_image_found",
    "Requests answered with an image that was already built (no build ran), by provider",
    ["provider"],
)


class GcOutcome(enum.StrEnum):
    """How a garbage collection run ended, as a metric label."""

    SUCCESS = "success"
    FAILURE = "failure"


GC_IMAGES_DELETED = Counter(
    "binderhub_service_gc_images_deleted", "Images garbage collection deleted from the registry"
)

GC_BYTES_DELETED = Counter(
    "binderhub_service_gc_bytes_deleted",
    "Bytes (from manifests) of the images garbage collection deleted",
)

GC_LAST_RUN = Gauge(
    "binderhub_service_gc_last_run_timestamp_seconds",
    "When garbage collection last ended (seconds since the epoch), by outcome",
    ["outcome"],
)

BUILD_CACHE_BYTES = Gauge(
    "binderhub_service_build_cache_bytes",
    "Bytes of the local engine's build cache that no image holds, when last measured",
)

BUILD_CACHE_PRUNED_BYTES = Counter(
    "binderhub_service_build_cache_pruned_bytes",
    "Bytes the local engine's build cache prunes freed",
)

ENGINE_FREE_BYTES = Gauge(
    "binderhub_service_engine_free_bytes",
    "Free bytes on the local engine's disk (its data root), when last measured",
)
