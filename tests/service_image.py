"""The service image as CI builds it (.ci/build-service-image), built once per test run."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
DEFAULT_TAG = "binderhub-service:test"


@functools.cache
def service_image() -> str:
    """The image's name, built now unless ``$BHS_TEST_SERVICE_IMAGE`` names one already built.

    ``BHS_TEST_SERVICE_IMAGE`` is for development (an image made with the same
    script); CI leaves it unset and builds ``binderhub-service:test``.
    """
    image = os.environ.get("BHS_TEST_SERVICE_IMAGE")
    if image:
        return image
    subprocess.run(
        [str(ROOT / ".ci" / "build-service-image"), DEFAULT_TAG], check=True, timeout=1200
    )
    return DEFAULT_TAG
