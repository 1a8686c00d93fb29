"""Deterministic result CIDs: replicas of a job must publish the same result under the same CID,
whatever their Kubo's `Import.*` config, the order the job wrote its files in, or their mtimes and
modes (`protocol.ipfs.ADD_LAYOUT`); and the node adds nothing of its own that differs between runs
(real Kubo, real Docker)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from protocol.outcome import OutcomeStatus
from tests.executor.conftest import run, sh

# the tree a job might leave: nested, an empty directory, a file chunked (> 256 KiB) and one that
# needs a second level of links under 1 KiB chunks, an empty file, names whose byte order matters
FILES: dict[str, bytes] = {
    "stdout": b"hello\n",
    "stderr": b"",
    "exitCode": b"0\n",
    "outputs/B.txt": b"upper\n",
    "outputs/a.txt": b"lower\n",
    "outputs/big.bin": bytes(range(256)) * 2600,  # 665,600 bytes: three 256 KiB chunks
    "outputs/nested/deeper/z": b"z" * 5000,
    "outputs/nested/-first": b"dash\n",
}
EMPTY_DIRS = ["outputs/empty"]
# an operator's config that changes every default ADD_LAYOUT pins
OTHER_IMPORT = {
    "Import.CidVersion": "0",
    "Import.UnixFSRawLeaves": "false",
    "Import.UnixFSChunker": '"size-1024"',
    "Import.UnixFSFileMaxLinks": "8",
}


def write_tree(root: Path, reverse: bool, mtime: int, mode: int) -> Path:
    root.mkdir()
    for rel in sorted(EMPTY_DIRS, reverse=reverse):
        (root / rel).mkdir(parents=True)
    for rel in sorted(FILES, reverse=reverse):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FILES[rel])
        path.chmod(mode)
        os.utime(path, (mtime, mtime))
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            os.utime(path, (mtime, mtime))
    return root


def config(kubo: KuboClient, key: str, value: str | None = None) -> Any:
    params = [("arg", key)] + ([("arg", value), ("json", "true")] if value is not None else [])
    return kubo._post("config", params=params).json()["Value"]


@pytest.fixture
def other_import_config(kubo: KuboClient) -> Iterator[None]:
    """This Kubo with another operator's `Import.*` config, restored afterwards (the add command
    reads the config on every call)."""
    saved = config(kubo, "Import")
    try:
        for key, value in OTHER_IMPORT.items():
            config(kubo, key, value)
        yield
    finally:
        config(kubo, "Import", json.dumps(saved))


def default_add(kubo: KuboClient, path: Path) -> str:
    """An `ipfs add` of one file naming no layout: what the node's config alone gives."""
    response = kubo._post("add", params={"pin": "false", "quieter": "true", "only-hash": "true"},
                          files={"file": (path.name, path.read_bytes())})
    return str(response.json()["Hash"])


def test_the_same_tree_gets_the_same_cid_whatever_the_config_order_and_mtimes(
        kubo: KuboClient, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first = write_tree(tmp_path / "one", reverse=False, mtime=1_000_000_000, mode=0o644)
    cid = kubo.add_path(first)
    assert cid.startswith("bafy")  # CIDv1, dag-pb root, sha2-256
    big = first / "outputs" / "big.bin"
    big_cid, plain_cid = kubo.add_path(big), default_add(kubo, big)

    request.getfixturevalue("other_import_config")
    assert default_add(kubo, big) not in {plain_cid, big_cid}  # the config does change a plain add
    second = write_tree(tmp_path / "two", reverse=True, mtime=1_700_000_000, mode=0o600)
    assert kubo.add_path(second) == cid
    assert kubo.add_path(big) == big_cid


def test_running_the_same_job_twice_publishes_the_same_cid(runner: JobRunner,
                                                           kubo: KuboClient) -> None:
    spec = sh("echo out; echo err >&2; mkdir -p /outputs/d /outputs/e; "
              "seq 1 50000 > /outputs/d/numbers; echo 42 > /outputs/answer; exit 3",
              result="/outputs/answer")
    first, second = run(runner, spec), run(runner, spec)
    assert first.status == second.status == OutcomeStatus.COMPLETED
    assert (first.exit_code, first.result) == (3, b"42\n".hex())
    assert first.result_cid == second.result_cid
    assert second.result == first.result
    assert first.result_cid is not None
    assert kubo.cat(f"{first.result_cid}/outputs/answer") == b"42\n"  # published, too
