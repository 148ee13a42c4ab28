"""The build pod program on this machine: a real git daemon, real git, its real steps.

repo2docker is replaced by a script that reports the environment and files it
was given (the real one runs in the engine test of tests/kubernetes); the push
step is off. Nothing is emulated.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from binderhub_service.pod_build import BuildSpec, main
from binderhub_service.repo2docker import Repo2DockerOptions

from .conftest import GitServer

SECRET = "planted-secret-0123"
ENVIRON = {
    "GIT_CREDENTIAL_ENV": f"username=x\\npassword={SECRET}",
    "DOCKER_HOST": "unix:///var/run/docker.sock",
    "SERVICE_ONLY": "of the pod",
}
REPORTER = textwrap.dedent(
    """\
    import json, os, sys
    config = os.environ.get("DOCKER_CONFIG", "")
    report = {
        "env": dict(os.environ),
        "config_files": os.listdir(config) if os.path.isdir(config) else None,
        "args": sys.argv[1:],
        "repo": sorted(os.listdir(sys.argv[-1])),
        "r2d_config": open(sys.argv[sys.argv.index("--config") + 1]).read(),
    }
    print("not a JSON line: dropped")
    print(json.dumps({"phase": "building", "message": json.dumps(report)}))
    """
)


# What repo2docker prints when BuildKit's step was killed (recorded), then its own failure.
KILLED_STEP = textwrap.dedent(
    """\
    import json
    step = "#5 ERROR: executor failed running [/bin/sh -c make]: exit code: 137"
    print(json.dumps({"phase": "building", "message": step}))
    print("a line that is not JSON: exit code: 1")
    failure = "Command '['docker', 'buildx', 'build']' returned non-zero exit status 1."
    print(json.dumps({"phase": "failure", "message": failure}))
    raise SystemExit(1)
    """
)


def run(tmp_path: Path, url: str, ref: str, script: str = REPORTER) -> tuple[int, list[dict]]:
    reporter = tmp_path / "reporter.py"
    reporter.write_text(script)
    spec = BuildSpec(
        repo2docker=Repo2DockerOptions(repo_url=url, ref=ref, image_name="example/pod-build:1"),
        content_provider="repo2docker.contentproviders.Git",
        env={"OPERATOR_SETTING": "1"},
        repo2docker_command=(sys.executable, str(reporter)),
    )
    lines: list[str] = []
    code = main([spec.to_json()], {**ENVIRON, "TMPDIR": str(tmp_path)}, lines.append)
    return code, [json.loads(line) for line in lines]


def test_the_build_step_gets_the_checkout_and_nothing_secret(
    git_server: GitServer, tmp_path: Path
) -> None:
    url, sha = git_server.make_repo("pod-build-env", {"requirements.txt": "numpy\n"})
    code, events = run(tmp_path, url, sha)
    assert code == 0
    assert all(set(event) <= {"phase", "message"} for event in events)
    assert events[0]["phase"] == "fetching"
    [report] = [json.loads(e["message"]) for e in events if e["phase"] == "building"]
    env = report["env"]
    assert "GIT_CREDENTIAL_ENV" not in env
    assert "SERVICE_ONLY" not in env
    assert env["OPERATOR_SETTING"] == "1"
    assert env["DOCKER_HOST"] == ENVIRON["DOCKER_HOST"]
    assert report["config_files"] == []
    assert "--push" not in report["args"]
    assert report["repo"] == [".git", "requirements.txt"]
    assert report["r2d_config"].rstrip().endswith("c.Repo2Docker.content_providers = [Local]")
    assert SECRET not in json.dumps(events)
    # The build's folder is gone afterwards.
    assert [p.name for p in tmp_path.iterdir()] == ["reporter.py"]


def test_a_link_to_the_pods_environment_fails_before_the_build(
    git_server: GitServer, tmp_path: Path
) -> None:
    git_server.make_repo("pod-build-hostile", {"README": "x"})
    os.symlink("/proc/self/environ", git_server.root / "work" / "pod-build-hostile" / "apt.txt")
    url, sha = git_server.make_repo("pod-build-hostile", {})
    code, events = run(tmp_path, url, sha)
    assert code == 1
    assert events[-1] == {
        "phase": "failed",
        "message": "The build failed; the build log above shows why.",
        "failure_class": "invalid_repository",
    }
    assert not any(event["phase"] == "building" for event in events if "phase" in event)
    assert SECRET not in json.dumps(events)


def test_a_failed_build_ends_with_one_failed_line_naming_its_class(
    git_server: GitServer, tmp_path: Path
) -> None:
    """repo2docker's own failed line is kept back and printed once, with the class read
    from every line the step printed (also those that are dropped)."""
    url, sha = git_server.make_repo("pod-build-killed", {"README": "x"})
    code, events = run(tmp_path, url, sha, KILLED_STEP)
    assert code == 1
    failed = [event for event in events if event.get("phase") in ("failed", "failure")]
    assert failed == [events[-1]]
    assert events[-1]["failure_class"] == "out_of_memory"
    assert "returned non-zero exit status 1" in events[-1]["message"]
    assert not any("not JSON" in event["message"] for event in events)
