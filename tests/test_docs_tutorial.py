"""The tutorial (docs/source/tutorial/first-build.md), followed as written, in a browser.

Its shell command starts the service and what it needs; what the script prints
must match the page's first output block (``<port>``, ``<hash>`` and ``<commit>``
stand for any value). Then headless Chromium opens the printed address and takes
the page's steps by the labels the tutorial names, the image shown is run with
the tutorial's ``docker run`` line, and the ``curl`` line the script printed
answers the single event the tutorial shows; pressing the button again opens
the same build.

Nothing is installed during the test: the machine is set up (.ci/setup), and the
script is given the service image built before the tests (``BINDERHUB_SERVICE_IMAGE``).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.docs_snippets import DOCS, code_blocks
from tests.service_image import service_image

pytestmark = [pytest.mark.docker, pytest.mark.browser]

PAGE = "tutorial/first-build.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"<(port|hash|commit)>")
# The form's parts, by the labels the tutorial's steps name.
STEPS = {
    "provider": "Provider",
    "provider_choice": "Git repository",
    "repository": "Arbitrary git repository URL",
    "ref": "Git ref (branch, tag or commit)",
    "button": "Build",
}


def as_pattern(documented: str) -> re.Pattern[str]:
    """A documented output line as a regular expression, placeholders matching any value."""
    parts = PLACEHOLDER.split(documented)
    # split() keeps the placeholder names at odd positions.
    return re.compile(
        "".join(r"[^\s\"']+" if i % 2 else re.escape(part) for i, part in enumerate(parts))
    )


def assert_shown(block: str, output: str) -> None:
    for line in block.splitlines():
        assert as_pattern(line).search(output), f"the page shows {line!r}; printed:\n{output}"


def read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("the script ended early:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise TimeoutError("no " + repr(marker) + " in:\n" + "".join(seen))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def log_lines(page: Page) -> list[str]:
    await expect(page.locator("#log")).to_have_attribute("data-done", "1", timeout=600_000)
    return await page.locator("#log .log-line").all_text_contents()


async def press_build(page: Page) -> str:
    """Press the form's button; the id of the build the page then follows."""
    before = page.url
    await page.get_by_role("button", name=STEPS["button"], exact=True).click()
    await page.wait_for_function("before => location.href !== before", arg=before)
    return build_id_of(page)


def build_id_of(page: Page) -> str:
    return page.url.split("#build=", 1)[1]


def test_the_steps_name_the_forms_labels() -> None:
    """Every label the browser test uses is the one the tutorial's steps name."""
    text = (DOCS / PAGE).read_text()
    steps = text.split("## 2.", 1)[1].split("## 3.", 1)[0]
    named = set(re.findall(r"\*\*(.+?)\*\*", steps))
    assert set(STEPS.values()) <= named, named


async def test_the_tutorial_as_written(
    docker_engine: None, base_image: str, browser: Browser, tmp_path: Path
) -> None:
    start, run_image = (b.body.strip() for b in code_blocks(PAGE, "bash"))
    printed, built, hello, answer = (b.body for b in code_blocks(PAGE, "text"))
    image_pattern = re.search(r"\*\*Image\*\* then shows .*?\n`([^`]+)`", (DOCS / PAGE).read_text())
    assert image_pattern is not None
    env = {**os.environ, "BINDERHUB_SERVICE_IMAGE": service_image()}
    proc = subprocess.Popen(
        ["bash", "-c", start],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    context = await browser.new_context()
    try:
        output = read_until(lines, "Press Ctrl-C", timeout=900)
        assert_shown(printed, output)
        address = re.search(r"The service's page: (\S+)", output)
        repository = re.search(r"Repository to build there: (\S+)", output)
        assert address is not None and repository is not None

        page = await context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        await page.goto(address[1])
        await page.get_by_label(STEPS["provider"]).select_option(label=STEPS["provider_choice"])
        await page.get_by_label(STEPS["repository"]).fill(repository[1])
        await page.get_by_label(STEPS["ref"]).fill("main")
        first = await press_build(page)
        shown = await log_lines(page)
        assert shown[-1] == built.strip()
        await expect(page.locator("#build-state")).to_have_text("succeeded")
        image = (await page.locator("#build-image").inner_text()).strip()
        assert as_pattern(image_pattern[1]).fullmatch(image), image
        await expect(page.locator(f"#history tr[data-build='{first}']")).to_contain_text(
            "succeeded"
        )
        await page.screenshot(path=tmp_path / "tutorial-built.png", full_page=True)

        ran = subprocess.run(
            ["bash", "-c", run_image.replace("<image>", image)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        assert_shown(hello, ran.stdout)

        curl = output.split("Ask for it through the event stream:\n", 1)[1].splitlines()[0]
        assert curl.strip().startswith("curl -sN -H 'Accept: text/event-stream' 'http://127.0.0.1:")
        got = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        documented = answer.strip().splitlines()
        assert [
            as_pattern(line).fullmatch(line_got) is not None
            for line, line_got in zip(documented, got.strip().splitlines(), strict=True)
        ] == [True] * len(documented), got
        assert image in got

        await page.get_by_role("button", name=STEPS["button"], exact=True).click()
        await expect(page.locator("#form-error")).to_have_text("")
        assert build_id_of(page) == first
        assert await log_lines(page) == shown
        assert all(url.startswith(address[1]) for url in requests)
        assert proc.poll() is None, "the service keeps running until Ctrl-C"
    finally:
        await context.close()
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stdout.close()
    assert status == 130
    work = re.search(r"log: (/tmp/binderhub-service-example\.\w+)/service\.log", output)
    assert work is not None and not Path(work[1]).exists(), "Ctrl-C removes the example's files"
