"""An iterative walk over a directory tree that a job wrote, safe against what a job can write.

A job controls its output tree: millions of files, chains thousands of levels deep, paths far past
`PATH_MAX`. `os.walk` (recursive before Python 3.12, and path-based) breaks on those, so this walk
keeps an explicit stack of directory file descriptors (opened relative to their parent, never
following symlinks), stops at a depth cap, and lets a caller open each file only when it needs it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_DEPTH = 256


class TreeLimitExceeded(RuntimeError):
    """The tree is deeper or holds more entries than allowed; the message says which cap."""


@dataclass(frozen=True)
class Entry:
    rel: str  # the path relative to the root, "" for the root itself
    is_dir: bool
    dir_fd: int  # the open parent directory (valid until the walk moves on); -1 for the root
    name: str
    size: int  # bytes, for regular files (0 for directories)
    depth: int  # 0 for the root, 1 for its entries, 2 for theirs, …

    def open(self) -> int:
        """A read-only descriptor of this regular file (the caller closes it)."""
        return os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int
    depth: int


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(root: Path, max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[Entry]:
    """Depth-first, the root first, each directory before its content, names sorted; regular
    files and directories only (symlinks and devices are skipped). Raises TreeLimitExceeded for a
    directory deeper than `max_depth` below the root. At most `max_depth + 1` descriptors are open."""
    root_fd = os.open(root, _DIR_FLAGS)
    yield Entry("", True, -1, root.name, 0, 0)
    stack: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = []
    try:
        stack.append((root_fd, "", iter(_sorted_entries(root_fd))))
    except BaseException:
        os.close(root_fd)
        raise
    try:
        while stack:
            fd, prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(fd)
                stack.pop()
                continue
            depth = len(stack)
            rel = f"{prefix}{entry.name}"
            try:
                info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if depth > max_depth:
                    raise TreeLimitExceeded(f"directories nested deeper than {max_depth} levels")
                yield Entry(rel, True, fd, entry.name, 0, depth)
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                try:
                    stack.append((child, f"{rel}/", iter(_sorted_entries(child))))
                except BaseException:
                    os.close(child)
                    raise
            elif stat.S_ISREG(info.st_mode):
                yield Entry(rel, False, fd, entry.name, info.st_size, depth)
    finally:
        for fd, _prefix, _entries in stack:
            os.close(fd)


def _sorted_entries(fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as scan:
        return sorted(scan, key=lambda e: e.name)


def measure(root: Path, max_files: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> Usage:
    """Bytes and entries (files and directories) under `root`, and the depth reached. Raises
    TreeLimitExceeded past `max_files` entries or `max_depth` levels (stops there: a hostile tree
    costs no more than the caps)."""
    total = files = depth = 0
    for entry in walk(root, max_depth):
        if not entry.rel:
            continue
        files += 1
        total += entry.size
        depth = max(depth, entry.depth)
        if max_files is not None and files > max_files:
            raise TreeLimitExceeded(f"more than {max_files} files and directories")
    return Usage(total, files, depth)


def remove(root: Path) -> None:
    """Remove a tree of any depth (shutil.rmtree recurses: RecursionError past ~1,000 levels)."""
    if not root.exists() and not root.is_symlink():
        return
    if not root.is_dir() or root.is_symlink():
        root.unlink(missing_ok=True)
        return
    parent_fd = os.open(root.parent, _DIR_FLAGS)
    try:
        _remove_children(os.open(root.name, _DIR_FLAGS, dir_fd=parent_fd))
        os.rmdir(root.name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _remove_children(top_fd: int) -> None:
    """Empties the directory open as `top_fd` (and closes it), one descriptor per level."""
    # (descriptor, names left in it, its own name in the directory below it on the stack)
    stack: list[tuple[int, list[str], str]] = [(top_fd, _names(top_fd), "")]
    try:
        while stack:
            fd, names, own_name = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                if stack:
                    os.rmdir(own_name, dir_fd=stack[-1][0])
                continue
            name = names.pop()
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                stack.append((child, _names(child), name))
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        for fd, _left, _name in stack:
            os.close(fd)


def _names(fd: int) -> list[str]:
    with os.scandir(fd) as scan:
        return [e.name for e in scan]
