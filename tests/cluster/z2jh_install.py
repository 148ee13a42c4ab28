"""The chart installed as docs/source/howto/install-z2jh.md says, for tests: manifests and NOTES.

:func:`helm_install` renders what ``helm install bhs --namespace jhub`` would
apply (a client-side dry run of the real helm), with the NOTES it prints; the
other helpers pick objects out of the manifests and get a hub user a token.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_helpers import CHART
from tests.cluster.z2jh_hub import RunningHub

NAMESPACE = "jhub"
RELEASE = "bhs"


def helm_install(helm: str, values: dict[str, Any], tmp_path: Path) -> tuple[list[dict], str]:
    """The manifests and NOTES of ``helm install bhs --namespace jhub`` (a client dry run)."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [
            helm,
            "install",
            RELEASE,
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--values",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    manifest_text, notes = result.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)
    return [doc for doc in yaml.safe_load_all(manifest_text) if doc], notes


def one(manifests: list[dict], kind: str) -> dict[str, Any]:
    """The one manifest of ``kind``."""
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def secret_value(manifests: list[dict], name: str, key: str) -> str:
    """A value of a rendered Secret's ``stringData``."""
    for manifest in manifests:
        if manifest["kind"] == "Secret" and manifest["metadata"]["name"] == name:
            return str(manifest["stringData"][key])
    raise AssertionError(f"no Secret {name}")


def hub_token(hub: RunningHub, user: str) -> str:
    """A new API token of hub user ``user``, made with the hub's admin token."""
    request = urllib.request.Request(
        f"{hub.api_url}/users/{user}/tokens",
        method="POST",
        data=json.dumps({"note": "tests"}).encode(),
        headers={"Authorization": f"token {hub.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["token"])
