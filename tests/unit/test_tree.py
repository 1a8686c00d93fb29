"""The iterative, descriptor-based walk over job-written trees: deeper than Python's recursion
limit and longer than PATH_MAX."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol.tree import TreeLimitExceeded, measure, remove, walk


def chain(root: Path, levels: int, name: str = "d") -> None:
    """`root/name/name/…/f`, made through descriptors (the path itself may exceed PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom")
        os.close(leaf)
    finally:
        os.close(fd)


def test_a_tree_deeper_than_the_cap_is_refused_and_still_removed(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    root.mkdir()
    chain(root, 3000)
    with pytest.raises(TreeLimitExceeded, match="deeper than 256 levels"):
        measure(root)
    remove(root)
    assert not root.exists()


def test_paths_longer_than_path_max_are_walked_within_the_cap(tmp_path: Path) -> None:
    root = tmp_path / "long"
    root.mkdir()
    chain(root, 100, "n" * 100)  # 10,100-character paths
    usage = measure(root)
    assert (usage.files, usage.bytes, usage.depth) == (101, 6, 101)  # the file, under 100 dirs
    contents = []
    for entry in walk(root):  # a file is opened while the walk stands at it
        if not entry.is_dir:
            fd = entry.open()
            contents.append(os.read(fd, 10))
            os.close(fd)
    assert contents == [b"bottom"]


def test_the_file_cap_stops_the_walk(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"f{i}").touch()
    assert measure(tmp_path, max_files=20).files == 20
    with pytest.raises(TreeLimitExceeded, match="more than 19 files"):
        measure(tmp_path, max_files=19)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x" * 100)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(tmp_path / "secret")
    (tree / "dirlink").symlink_to(tmp_path)
    assert measure(tree).files == 0
