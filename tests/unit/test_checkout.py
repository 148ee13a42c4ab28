"""The checkout check: links that leave the checkout, and entries that are not files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from binderhub_service.checkout import (
    CheckoutTooLarge,
    UnsafeCheckout,
    check_checkout,
    check_size,
    find_problems,
)


def tree(root: Path, links: dict[str, str], files: tuple[str, ...] = ("README.md",)) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / name)
    return root


def test_links_inside_the_checkout_are_fine(tmp_path):
    root = tree(
        tmp_path,
        {
            "runtime.txt": "README.md",
            "binder/apt.txt": "../README.md",
            "binder/self": ".",
            "chain1": "chain2",
            "chain2": "binder/apt.txt",
            "dangling": "not-yet-there",
            "loop": "loop",
        },
    )
    assert find_problems(str(root)) == []
    check_checkout(str(root))


@pytest.mark.parametrize(
    "links",
    [
        {"runtime.txt": "/proc/self/environ"},
        {"apt.txt": "/etc/passwd"},
        {"binder/environment.yml": "../../outside"},
        {"requirements.txt": "a/../../x"},
        {"Dockerfile": "hop", "hop": "/root/.docker/config.json"},
        {"dir/link": "../../"},
        {"up": ".."},
    ],
)
def test_links_leaving_the_checkout_are_refused(tmp_path, links):
    root = tree(tmp_path / "checkout", links, files=("dir/README.md",))
    with pytest.raises(UnsafeCheckout) as error:
        check_checkout(str(root))
    message = error.value.message
    assert "The repository was not built" in message
    assert str(tmp_path) not in message
    assert any(name in message for name in links)


def test_the_message_names_a_few_and_counts_the_rest(tmp_path):
    root = tree(tmp_path, {f"l{i}": "/etc/passwd" for i in range(8)})
    with pytest.raises(UnsafeCheckout) as error:
        check_checkout(str(root))
    assert "and 3 more" in error.value.message


def test_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    problems = find_problems(str(tmp_path))
    assert [p.path for p in problems] == ["pipe"]


def test_a_checkout_below_a_linked_folder_is_checked_by_its_real_path(tmp_path):
    real = tree(tmp_path / "real", {"runtime.txt": "README.md"})
    os.symlink(real, tmp_path / "alias")
    assert find_problems(str(tmp_path / "alias")) == []


def test_size_bound(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 2048)
    check_size(str(tmp_path), 4096)
    with pytest.raises(CheckoutTooLarge):
        check_size(str(tmp_path), 1024)
