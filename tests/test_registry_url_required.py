"""The service refuses to start with use_registry on and no registry URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_service(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.py").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "binderhub_service", "--config", str(tmp_path / "config.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def test_use_registry_without_a_url_exits_with_one_line(tmp_path: Path) -> None:
    result = run_service(
        tmp_path,
        "c.BinderHubService.use_registry = True\n"
        "c.BinderHubService.auth_enabled = False\n"
        f"c.BinderHubService.data_dir = {str(tmp_path / 'data')!r}\n",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "registry" in line]
    assert "use_registry is on but no registry URL is set" in line
    assert "c.DockerRegistry.url" in line and "registry.url" in line
    # Nothing was created: it stopped before opening its database.
    assert not (tmp_path / "data").exists()
