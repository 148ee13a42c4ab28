"""Fetch one record with a repo2docker content provider: the child process of a fetch step.

Run as ``python -m binderhub_service.content_fetch`` with a JSON request on its
standard input (``provider``, ``url``, ``output_dir``) and an environment that
holds nothing of the service's. Prints each progress line as one JSON object
``{"message": ...}``; exits non-zero when the record cannot be fetched.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from traitlets.utils.importstring import import_item

from .fetch import RECORD_CONTENT_PROVIDERS


def fetch_record(provider: str, url: str, output_dir: str) -> int:
    """Fetch ``url`` into ``output_dir`` with ``provider``; return the process's exit code."""
    if provider not in RECORD_CONTENT_PROVIDERS:
        print(f"not a record content provider: {provider}", file=sys.stderr)
        return 2
    content_provider: Any = import_item(provider)()
    spec = content_provider.detect(url)
    if spec is None:
        print(f"{provider} does not recognise the record", file=sys.stderr)
        return 3
    for line in content_provider.fetch(spec, output_dir, yield_output=True):
        print(json.dumps({"message": line}), flush=True)
    return 0


def main() -> None:
    request = json.load(sys.stdin)
    sys.exit(fetch_record(request["provider"], request["url"], request["output_dir"]))


if __name__ == "__main__":
    main()
