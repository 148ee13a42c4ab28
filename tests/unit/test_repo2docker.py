import json

from binderhub_service.events import BuildEvent, Phase
from binderhub_service.repo2docker import (
    GENERIC_FAILURE,
    Repo2DockerOptions,
    build_args,
    parse_log_line,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_arguments_for_a_pushed_build():
    options = Repo2DockerOptions(
        repo_url="https://example.org/repo.git",
        ref=SHA,
        image_name="reg/binder-x:" + SHA,
        push=True,
        config_file="/etc/r2d.py",
        extra_args=("--cache-from", "reg/cache"),
    )
    assert build_args(options) == [
        "--no-run",
        "--json-logs",
        "--config",
        "/etc/r2d.py",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--ref",
        SHA,
        "--image-name",
        "reg/binder-x:" + SHA,
        "--push",
        "--cache-from",
        "reg/cache",
        "--",
        "https://example.org/repo.git",
    ]


def test_repository_always_comes_after_end_of_options():
    args = build_args(Repo2DockerOptions(repo_url="-x", ref=SHA, image_name="i:t"))
    assert args[-2:] == ["--", "-x"]
    assert "--push" not in args and "--config" not in args


def test_json_line_with_phase():
    line = json.dumps({"message": "Step 1\n", "phase": "building"})
    assert parse_log_line(line + "\n").event == BuildEvent(Phase.BUILDING, "Step 1\n")


def test_json_line_without_phase_passes_through():
    parsed = parse_log_line('{"message": "Picked Git content provider.\\n"}')
    assert parsed.event == BuildEvent(None, "Picked Git content provider.\n")
    assert parsed.event.to_dict() == {"message": "Picked Git content provider.\n"}


def test_non_json_lines_are_unknown():
    assert parse_log_line("plain text\n").event == BuildEvent(Phase.UNKNOWN, "plain text")
    assert parse_log_line("[1, 2]").event == BuildEvent(Phase.UNKNOWN, "[1, 2]")


def test_failure_line_becomes_a_fixed_reason_and_drops_the_traceback():
    line = json.dumps(
        {
            "message": "Error during build: boom",
            "exc_info": 'Traceback (most recent call last):\n  File "/srv/x.py"',
            "phase": "failed",
        }
    )
    parsed = parse_log_line(line)
    assert parsed.event is None
    assert parsed.failure == GENERIC_FAILURE


def test_repo2docker_cannot_declare_a_build_ready():
    parsed = parse_log_line('{"message": "x", "phase": "ready"}')
    assert parsed.event == BuildEvent(Phase.UNKNOWN, "x")
    assert parse_log_line('{"message": "x", "phase": "weird"}').event.phase is Phase.UNKNOWN


def test_failure_messages_are_fixed_texts():
    line = json.dumps(
        {
            "message": "Error during build: Command '['docker', 'buildx', 'build', "
            "'/tmp/binderhub-build-x/repo2docker1']' returned non-zero exit status 1.",
            "phase": "failed",
        }
    )
    assert parse_log_line(line).failure == (
        "The image build stopped with exit status 1; "
        "the build log above shows the step that failed."
    )
    # Any other failure text may quote what repo2docker read: never shown.
    for message in ("No such file: /srv/data/x.txt", "python-3.11\\nHUB_TOKEN=secret", ""):
        other = parse_log_line(json.dumps({"message": message, "phase": "failure"}))
        assert other.failure == GENERIC_FAILURE
    assert parse_log_line('{"phase": "failed"}').failure == GENERIC_FAILURE
