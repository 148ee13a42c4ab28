"""The wheel carries the web page: built offline, without Node, from the source tree.

``python -m build --wheel --no-isolation`` runs the project's build backend from
the test environment (nothing is downloaded) with a ``PATH`` that holds no
``node`` or ``npm``; every file of ``binderhub_service/static/`` must be in the
wheel, byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "binderhub_service" / "static"


def test_wheel_holds_every_static_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    # A copy of the tracked files, so the build writes nothing into the checkout.
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if path.is_file():
            target = source / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    no_node = tmp_path / "bin"
    no_node.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=source,
        env={"PATH": str(no_node), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("binderhub_service-*.whl")
    expected = {f"binderhub_service/static/{p.name}": p for p in STATIC.iterdir() if p.is_file()}
    assert "binderhub_service/static/index.html" in expected
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("binderhub_service/static/")}
        assert shipped == set(expected)
        for name, path in expected.items():
            assert archive.read(name) == path.read_bytes(), name
