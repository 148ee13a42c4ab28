"""Build step limits: their values, the limiter's writes and the out-of-memory report.

The limiter runs with real inotify on a temporary folder standing in for a cgroup
hierarchy; tests/test_build_limits.py runs it on the engine's real cgroups.
"""

from __future__ import annotations

import asyncio

import pytest
from traitlets import TraitError
from traitlets.config import Config

from binderhub_service.executors.local import LocalDockerExecutor
from binderhub_service.step_limits import (
    StepLimiter,
    StepLimits,
    format_bytes,
    oom_killed,
    oom_message,
    parse_memory,
    unsupported_reason,
)
from tests.docs_snippets import code_blocks


@pytest.mark.parametrize(
    ("size", "text"),
    [(96 * 2**20, "96 MiB"), (3 * 2**29, "1.5 GiB"), (2**40, "1 TiB"), (512, "512 bytes")],
)
def test_format_bytes(size, text):
    assert format_bytes(size) == text


def test_writes_memory_then_swap_then_cpu():
    limits = StepLimits(memory=2**27, cpu=1.5)
    assert limits.writes(has_memsw=True) == [
        ("memory", "memory.limit_in_bytes", str(2**27)),
        ("memory", "memory.memsw.limit_in_bytes", str(2**27)),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "150000"),
    ]
    assert StepLimits(memory=2**27).writes(has_memsw=False) == [
        ("memory", "memory.limit_in_bytes", str(2**27))
    ]
    assert limits.describe() == "memory 128 MiB, 1.5 CPU"
    assert not StepLimits.from_config(None, 0.0).active


@pytest.mark.parametrize(
    "line",
    [
        "#5 ERROR: executor failed running [/bin/sh -c python big.py]: exit code: 137\n",
        "ERROR: failed to solve: executor failed running [/bin/sh -c big]: exit code: 137\n",
        'ERROR: process "/bin/sh -c big" did not complete successfully: exit code: 137\n',
    ],
)
def test_a_killed_step_is_recognised_in_both_engines_wording(line):
    assert oom_killed(line)
    assert not oom_killed(line.replace("137", "1"))
    assert not oom_killed(line.replace("137", "1370"))


@pytest.mark.parametrize(
    "line",
    [
        "#5 0.594 ERROR: x: exit code: 137\n",
        "#5 ERROR: executor failed running [/bin/sh -c echo exit code: 137; exit 1]: "
        "exit code: 1\n",
    ],
)
def test_a_step_cannot_pass_its_output_off_as_a_kill(line):
    assert not oom_killed(line)


def test_the_message_names_the_limit():
    assert "96 MiB per build step" in oom_message(96 * 2**20)
    assert "ran out of memory" in oom_message(None)


@pytest.mark.parametrize(("text", "size"), [("2G", 2**31), ("512Mi", 2**29), ("1000", 1000)])
def test_parse_memory(text, size):
    assert parse_memory(text) == size


def test_executor_traits_refuse_negative_limits():
    with pytest.raises(TraitError):
        LocalDockerExecutor(build_memory_limit=-1)
    with pytest.raises(TraitError, match="at least 16M"):
        LocalDockerExecutor(build_memory_limit=512)
    with pytest.raises(TraitError):
        LocalDockerExecutor(build_cpu_limit=-0.5)
    executor = LocalDockerExecutor(build_memory_limit="1.5G", build_cpu_limit=2)
    assert executor.step_limits == StepLimits(memory=3 * 2**29, cpu=2.0)


def test_unsupported_hierarchies_say_why(tmp_path):
    limits = StepLimits(memory=2**27)
    assert "no cgroup v1 memory hierarchy" in unsupported_reason(str(tmp_path), "d/b", limits)
    (tmp_path / "cgroup.controllers").write_text("memory cpu\n")
    assert "cgroup v2" in unsupported_reason(str(tmp_path), "d/b", limits)


async def test_the_limiter_limits_steps_already_there_and_new_ones(tmp_path):
    for controller in ("memory", "cpu"):
        (tmp_path / controller / "docker" / "buildkit" / "old-step").mkdir(parents=True)
    limiter = StepLimiter(StepLimits(memory=2**27, cpu=0.5), str(tmp_path), "docker/buildkit")
    assert unsupported_reason(str(tmp_path), "docker/buildkit", limiter.limits) is None
    limiter.start()
    try:
        for controller in ("memory", "cpu"):
            (tmp_path / controller / "docker" / "buildkit" / "new-step").mkdir()
        async with asyncio.timeout(5):
            while limiter.limited < 4:
                await asyncio.sleep(0.01)
    finally:
        limiter.stop()
    for step in ("old-step", "new-step"):
        memory = tmp_path / "memory" / "docker" / "buildkit" / step
        cpu = tmp_path / "cpu" / "docker" / "buildkit" / step
        assert (memory / "memory.limit_in_bytes").read_text() == str(2**27)
        assert not (memory / "memory.memsw.limit_in_bytes").exists()
        assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"


def test_the_how_to_config_sets_the_limits():
    [block] = code_blocks("howto/build-limits.md", "python")
    c = Config()
    exec(block.body, {"c": c})
    executor = LocalDockerExecutor(config=c)
    assert executor.step_limits == StepLimits(memory=2 * 2**30, cpu=1.5)
