"""The failure classifier on recorded output of real engines, pip, mamba, git and the kubelet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from binderhub_service.executors.pod_status import pod_status
from binderhub_service.failures import (
    HINTS,
    FailureClass,
    OutputClassifier,
    Step,
    classify_output,
    hint,
    parse_failure_class,
)
from binderhub_service.repo2docker import parse_log_line

# The engine's BuildKit (Docker 20.10) and repo2docker, recorded from a build of `RUN ... exit 3`.
EXIT_3 = [
    "#5 [2/2] RUN echo about to fail && exit 3",
    "#5 0.100 about to fail",
    "#5 ERROR: executor failed running [/bin/sh -c echo about to fail && exit 3]: exit code: 3",
    "------",
    " > [2/2] RUN echo about to fail && exit 3:",
    "0.100 about to fail",
    "------",
    "ERROR: failed to solve: executor failed running [/bin/sh -c echo about to fail && exit 3]: "
    "exit code: 3",
    "Error during build: Command '['docker', 'buildx', 'build', '--progress', 'plain']' "
    "returned non-zero exit status 1.",
]
# Newer BuildKit words it differently, and quotes the Dockerfile.
EXIT_3_NEW = [
    "#6 [2/2] RUN exit 3",
    '#6 ERROR: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
    "------",
    " > [2/2] RUN exit 3:",
    "------",
    "Dockerfile:2",
    "--------------------",
    "   1 |     FROM base",
    "   2 | >>> RUN exit 3",
    "--------------------",
    'ERROR: failed to solve: process "/bin/sh -c exit 3" did not complete successfully: '
    "exit code: 3",
]
KILLED = [
    "#5 [2/2] RUN python build_big_thing.py",
    "#5 ERROR: executor failed running [/bin/sh -c python build_big_thing.py]: exit code: 137",
    "ERROR: failed to solve: executor failed running [/bin/sh -c python build_big_thing.py]: "
    "exit code: 137",
]
KILLED_NEW = [
    '#7 ERROR: process "/bin/sh -c pip install torch" did not complete successfully: '
    "exit code: 137",
]
SIGNAL_KILLED = [
    '#7 ERROR: process "/bin/sh -c make" did not complete successfully: signal: killed'
]
PIP_CONFLICT = [
    "#7 4.2 ERROR: Cannot install numpy==1.20.0 and scipy==1.13.0 because these package "
    "versions have conflicting dependencies.",
    "#7 4.2 ",
    "#7 4.2 The conflict is caused by:",
    "#7 4.2     The user requested numpy==1.20.0",
    "#7 4.2     scipy 1.13.0 depends on numpy<2.3 and >=1.22.4",
    "#7 4.2 ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/"
    "dependency-resolution/#dealing-with-dependency-conflicts",
    "#7 ERROR: executor failed running [/bin/sh -c pip install -r requirements.txt]: exit code: 1",
]
MAMBA_CONFLICT = [
    "#9 31.5 error    libmamba Could not solve for environment specs",
    "#9 31.5     The following packages are incompatible",
    "#9 31.5     ├─ numpy 1.26** is requested and can be installed;",
    "#9 31.5     └─ scipy 1.5** is not installable because it requires",
    "#9 31.5        └─ numpy <1.21, which conflicts with any installable versions previously "
    "reported.",
    "#9 31.5 critical libmamba Could not solve for environment specs",
    "#9 ERROR: executor failed running [/bin/sh -c micromamba install -f environment.yml]: "
    "exit code: 1",
]
CONDA_LIBMAMBA = [
    "#9 12.0 LibMambaUnsatisfiableError: Encountered problems while solving:",
    "#9 12.0   - package scipy-1.5.0 requires numpy >=1.14.6,<1.20, but none of the providers "
    "can be installed",
    "#9 ERROR: executor failed running [/bin/sh -c conda env update]: exit code: 1",
]
APT_DISK_FULL = [
    "#6 12.3 dpkg: error processing archive /var/cache/apt/archives/libllvm15.deb (--unpack):",
    "#6 12.3  cannot copy extracted data for './usr/lib/libLLVM-15.so.1' to "
    "'/usr/lib/libLLVM-15.so.1.dpkg-new': failed to write (No space left on device)",
    "#6 ERROR: executor failed running [/bin/sh -c apt-get install -y llvm]: exit code: 100",
]
EXPORT_DISK_FULL = [
    "#8 exporting layers",
    "#8 ERROR: failed to copy files: copy file range failed: no space left on device",
]
PIP_OFFLINE = [
    "#7 2.1 WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, "
    "status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3."
    "connection.HTTPSConnection object>: Failed to establish a new connection: [Errno -3] "
    "Temporary failure in name resolution')': /simple/numpy/",
    "#7 9.8 ERROR: Could not find a version that satisfies the requirement numpy (from "
    "versions: none)",
    "#7 9.8 ERROR: No matching distribution found for numpy",
    "#7 ERROR: executor failed running [/bin/sh -c pip install numpy]: exit code: 1",
]
PIP_NO_SUCH_PACKAGE = [
    "#7 3.1 ERROR: Could not find a version that satisfies the requirement numpyy (from "
    "versions: none)",
    "#7 3.1 ERROR: No matching distribution found for numpyy",
    "#7 ERROR: executor failed running [/bin/sh -c pip install numpyy]: exit code: 1",
]
# The service's docker CLI when the engine's socket has no engine behind it.
ENGINE_GONE = [
    "docker: Cannot connect to the Docker daemon at unix:///srv/engine.sock. "
    "Is the docker daemon running?",
    "",
    "Run 'docker run --help' for more information",
]
ENGINE_GONE_NEW = [
    "failed to connect to the docker API at unix:///srv/engine.sock; check if the path is "
    "correct and if the daemon is running: dial unix /srv/engine.sock: connect: "
    "no such file or directory",
]
# repo2docker, in its container, when the engine's socket it was given does not answer.
R2D_NO_ENGINE = [
    "Picked Local content provider.",
    "Error during build: The docker commandline client must be installed: Command "
    "'['docker', 'version']' returned non-zero exit status 1.",
]
DOCKERFILE_TYPO = [
    "#1 [internal] load build definition from Dockerfile",
    "ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN",
]
MISSING_BASE = [
    "#3 [internal] load metadata for docker.io/library/nosuchimage:latest",
    "#3 ERROR: pull access denied, repository does not exist or may require authorization",
]
PUSH_REFUSED = [
    "The push refers to repository [127.0.0.1:5000/binder-x]",
    'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
]
PUSH_CUT = [
    "The push refers to repository [registry.example.org/binder-x]",
    "5f70bf18a086: Pushing  1.2GB/2GB",
    "blob upload unknown",
]
PUSH_503 = [
    "received unexpected HTTP status: 503 Service Unavailable",
]
GIT_REFUSED = [
    "fatal: unable to connect to 127.0.0.1:",
    "127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
]
GIT_NO_HOST = ["fatal: unable to access 'https://git.example.invalid/x/': Could not resolve host"]
GIT_NOT_FOUND = ["fatal: remote error: ", "  Repository not found."]
GIT_NO_COMMIT = ["fatal: remote error: upload-pack: not our ref 1234567890abcdef"]


@pytest.mark.parametrize(
    ("step", "lines", "exit_code", "expected"),
    [
        (Step.BUILD, EXIT_3, 1, FailureClass.BUILD_ERROR),
        (Step.BUILD, EXIT_3_NEW, 1, FailureClass.BUILD_ERROR),
        (Step.BUILD, KILLED, 1, FailureClass.OUT_OF_MEMORY),
        (Step.BUILD, KILLED_NEW, 1, FailureClass.OUT_OF_MEMORY),
        (Step.BUILD, SIGNAL_KILLED, 1, FailureClass.OUT_OF_MEMORY),
        (Step.BUILD, ["Picked Local content provider."], 137, FailureClass.OUT_OF_MEMORY),
        (Step.BUILD, PIP_CONFLICT, 1, FailureClass.DEPENDENCY_CONFLICT),
        (Step.BUILD, MAMBA_CONFLICT, 1, FailureClass.DEPENDENCY_CONFLICT),
        (Step.BUILD, CONDA_LIBMAMBA, 1, FailureClass.DEPENDENCY_CONFLICT),
        (Step.BUILD, APT_DISK_FULL, 1, FailureClass.DISK_FULL),
        (Step.BUILD, EXPORT_DISK_FULL, 1, FailureClass.DISK_FULL),
        (Step.BUILD, PIP_OFFLINE, 1, FailureClass.NETWORK),
        (Step.BUILD, PIP_NO_SUCH_PACKAGE, 1, FailureClass.DEPENDENCY_CONFLICT),
        (Step.BUILD, ENGINE_GONE, 125, FailureClass.ENGINE_UNAVAILABLE),
        (Step.BUILD, ENGINE_GONE_NEW, 125, FailureClass.ENGINE_UNAVAILABLE),
        (Step.BUILD, R2D_NO_ENGINE, 1, FailureClass.ENGINE_UNAVAILABLE),
        (Step.BUILD, DOCKERFILE_TYPO, 1, FailureClass.INVALID_REPOSITORY),
        (Step.BUILD, MISSING_BASE, 1, FailureClass.INVALID_REPOSITORY),
        (Step.BUILD, ["Traceback (most recent call last):", "KeyError: 'x'"], 1, "unknown"),
        (Step.PUSH, PUSH_REFUSED, 1, FailureClass.REGISTRY_UNAVAILABLE),
        (Step.PUSH, PUSH_503, 1, FailureClass.REGISTRY_UNAVAILABLE),
        (Step.PUSH, PUSH_CUT, 1, FailureClass.PUSH_FAILED),
        (Step.PUSH, ENGINE_GONE, 1, FailureClass.ENGINE_UNAVAILABLE),
        # Only a build step's kill means memory.
        (Step.PUSH, ["5f70bf18a086: Pushing"], 137, FailureClass.PUSH_FAILED),
        (Step.FETCH, GIT_REFUSED, 128, FailureClass.NETWORK),
        (Step.FETCH, GIT_NO_HOST, 128, FailureClass.NETWORK),
        (Step.FETCH, GIT_NOT_FOUND, 128, FailureClass.INVALID_REPOSITORY),
        (Step.FETCH, GIT_NO_COMMIT, 128, FailureClass.INVALID_REPOSITORY),
    ],
)
def test_recorded_outputs(
    step: Step, lines: list[str], exit_code: int, expected: FailureClass
) -> None:
    assert classify_output(step, lines, exit_code) == expected


def test_the_users_own_commands_never_decide_the_class() -> None:
    """A RUN line that mentions an error is quoted by BuildKit; only what ran says why."""
    lines = [
        "#5 [2/2] RUN echo 'No space left on device, ResolutionImpossible, exit code: 137' "
        "&& exit 3",
        "#5 ERROR: executor failed running [/bin/sh -c echo 'No space left on device, "
        "ResolutionImpossible, exit code: 137' && exit 3]: exit code: 3",
        " > [2/2] RUN echo 'No space left on device' && exit 3:",
        "   2 | >>> RUN echo 'No space left on device' && exit 3",
    ]
    assert classify_output(Step.BUILD, lines, 1) == FailureClass.BUILD_ERROR


def test_an_old_warning_is_not_the_cause() -> None:
    classifier = OutputClassifier(Step.BUILD, window=50)
    classifier.feed("#5 1.0 WARNING: Connection timed out, retrying")
    for n in range(100):
        classifier.feed(f"#5 {n} compiling")
    classifier.feed_all(EXIT_3[2:])
    assert classifier.classify(1) == FailureClass.BUILD_ERROR


def test_a_line_of_several_lines_is_read_line_by_line() -> None:
    classifier = OutputClassifier(Step.BUILD)
    classifier.feed("\n".join(PIP_CONFLICT))
    assert classifier.lines == len(PIP_CONFLICT)
    assert classifier.classify(1) == FailureClass.DEPENDENCY_CONFLICT


def test_transient_classes() -> None:
    assert {c for c in FailureClass if c.transient} == {
        FailureClass.ENGINE_UNAVAILABLE,
        FailureClass.REGISTRY_UNAVAILABLE,
        FailureClass.PUSH_FAILED,
    }


SERVER_DETAIL = re.compile(r"/(?:tmp|var|srv|etc|home|root|usr|opt)\b|--|\bdocker |repo2docker")


@pytest.mark.parametrize("failure_class", list(FailureClass))
def test_every_class_has_a_hint_without_server_details(failure_class: FailureClass) -> None:
    text = hint(failure_class, "4Gi")
    assert text and text == text.strip() and "{" not in text
    assert not SERVER_DETAIL.search(text)


def test_the_memory_hint_names_the_limit_when_given() -> None:
    assert "(4Gi)" in hint(FailureClass.OUT_OF_MEMORY, "4Gi")
    assert "(2 GiB)" in hint(FailureClass.OUT_OF_MEMORY, 2 * 2**30)
    assert "(512 MiB)" in hint(FailureClass.OUT_OF_MEMORY, 512 * 2**20)
    assert "(" not in hint(FailureClass.OUT_OF_MEMORY).split(".")[0]
    # Anything else than a quantity is not shown.
    assert "/etc" not in hint(FailureClass.OUT_OF_MEMORY, "/etc/passwd")
    assert hint(FailureClass.BUILD_ERROR, "4Gi") == HINTS[FailureClass.BUILD_ERROR]


def test_parse_failure_class() -> None:
    assert parse_failure_class("disk_full") is FailureClass.DISK_FULL
    assert parse_failure_class("rm -rf /") is None
    assert parse_failure_class(3) is None


def test_a_failed_line_carries_its_class_and_its_text_for_the_classifier_only() -> None:
    parsed = parse_log_line(
        '{"phase": "failed", "message": "Command \'[\\"docker\\"]\' returned non-zero exit '
        'status 1", "failure_class": "dependency_conflict"}'
    )
    assert parsed.failure_class is FailureClass.DEPENDENCY_CONFLICT
    assert parsed.failure is not None and "docker" not in parsed.failure
    assert "docker" in parsed.text
    forged = parse_log_line('{"phase": "failed", "message": "x", "failure_class": "nonsense"}')
    assert forged.failure_class is None


def _pod(status: dict) -> dict:
    return {"metadata": {"name": "build-x"}, "status": status}


def _container(state: dict) -> dict:
    return {"containerStatuses": [{"name": "repo2docker", "state": state}]}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # Recorded from the kubelet: the build container killed by the kernel's OOM killer.
        (
            {
                "phase": "Failed",
                **_container({"terminated": {"exitCode": 137, "reason": "OOMKilled", "signal": 9}}),
            },
            FailureClass.OUT_OF_MEMORY,
        ),
        (
            {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
            },
            FailureClass.TIMEOUT,
        ),
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "Pod ephemeral local storage usage exceeds the total limit of "
                "containers 10Gi.",
            },
            FailureClass.DISK_FULL,
        ),
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory. Threshold quantity: 100Mi, "
                "available: 90Mi. Container repo2docker was using 3Gi, request is 1Gi.",
            },
            FailureClass.OUT_OF_MEMORY,
        ),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "The node had condition: [X]."},
            FailureClass.INTERRUPTED,
        ),
        (
            {"phase": "Pending", **_container({"waiting": {"reason": "ErrImageNeverPull"}})},
            FailureClass.UNKNOWN,
        ),
        # repo2docker's own failure: the log decides.
        ({"phase": "Failed", **_container({"terminated": {"exitCode": 1}})}, None),
    ],
)
def test_pod_statuses(status: dict, expected: FailureClass | None) -> None:
    assert pod_status(_pod(status)).failure_class() == expected


def test_the_docs_page_lists_every_class() -> None:
    page = (Path(__file__).parents[2] / "docs/source/howto/failed-builds.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", page, re.MULTILINE))
    assert listed == {c.value for c in FailureClass}
