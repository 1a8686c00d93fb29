"""The node's input cache and result-volume pool on the real stack (Kubo, Docker): a repeat job
over an IPFS input mounts the cached copy instead of fetching it again; the copy is read-only to
every job (as the image's user or as root) and the next job reads the original bytes; eviction
keeps the cache within its size; a pooled result volume comes to the next job empty."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from tests.executor.conftest import RunnerFactory, run, sh

MiB = 1024 * 1024


def counting_fetches(runner: JobRunner) -> list[str]:
    """The sources the runner's IPFS provider fetched from Kubo, in order."""
    provider: Any = runner._storage.for_source("ipfs://x")
    fetched: list[str] = []
    fetch = provider.fetch

    def counted(source: str, destination: Path) -> str:
        fetched.append(source)
        return str(fetch(source, destination))

    provider.fetch = counted
    return fetched


def stdout(kubo: KuboClient, cid: str | None) -> str:
    assert cid
    return kubo.cat(f"{cid}/stdout").decode()


def directory_input(kubo: KuboClient, tmp_path: Path) -> str:
    tree = tmp_path / "dataset"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("original\n")
    (tree / "sub" / "b.txt").write_text("nested\n")
    return kubo.add_path(tree)


TAMPER = ("for op in 'echo x > /inputs/d/a.txt' 'rm -f /inputs/d/a.txt' 'touch /inputs/d/new' "
          "'mkdir /inputs/d/dir' 'chmod 777 /inputs/d/a.txt' 'mv /inputs/d/sub /inputs/d/moved' "
          "'ln /inputs/d/a.txt /outputs/link'; do sh -c \"$op\" 2>/dev/null && echo \"DID: $op\"; "
          "done; cat /inputs/d/a.txt /inputs/d/sub/b.txt; ls -A /inputs/d | tr '\\n' ' '")


@pytest.mark.parametrize("user", ["65534:65534", ""])  # the default user, and the image's root
def test_a_cached_input_is_reused_read_only_and_the_next_job_sees_the_original(
        make_runner: RunnerFactory, kubo: KuboClient, tmp_path: Path, user: str) -> None:
    runner = make_runner(container_user=user)
    fetched = counting_fetches(runner)
    cid = directory_input(kubo, tmp_path)
    spec = sh(TAMPER, inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/d"}])
    for _ in range(3):
        outcome = run(runner, spec)
        assert outcome.status == "completed", outcome.reason
        assert stdout(kubo, outcome.result_cid) == "original\nnested\na.txt sub "  # no DID: line
    assert fetched == [f"ipfs://{cid}"]  # fetched once, then mounted from the cache


def test_eviction_keeps_the_cache_within_its_size(
        make_runner: RunnerFactory, kubo: KuboClient) -> None:
    runner = make_runner(input_cache_size="56Mi")
    fetched = counting_fetches(runner)
    cids = [kubo.add_bytes(os.urandom(20 * MiB), f"d{i}.bin") for i in range(3)]
    cache = runner._input_cache
    assert cache is not None
    for cid in [*cids, cids[2], cids[0]]:
        outcome = run(runner, sh("wc -c < /inputs/d",
                                 inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/d"}]))
        assert outcome.status == "completed", outcome.reason
        assert stdout(kubo, outcome.result_cid).strip() == str(20 * MiB)
        assert cache.total_bytes() <= 56 * MiB
    # two fit: the third evicted the first; the repeat of the third was a hit; the first came back
    assert fetched == [f"ipfs://{c}" for c in (*cids, cids[0])]


def test_a_pooled_result_volume_is_empty_for_the_next_job(
        make_runner: RunnerFactory, kubo: KuboClient) -> None:
    runner = make_runner()
    first = run(runner, sh("head -c 1000000 /dev/urandom > /outputs/secret; mkdir /outputs/d; "
                           "echo mine > /outputs/d/f; ls -A /outputs"))
    assert first.status == "completed", first.reason
    assert stdout(kubo, first.result_cid) == "d\nsecret\n"
    for _ in range(2):
        outcome = run(runner, sh("find /outputs -mindepth 1 | wc -l"))
        assert outcome.status == "completed", outcome.reason
        assert stdout(kubo, outcome.result_cid).split() == ["0"]  # nothing of the first job's
    assert runner._volume_pool is not None and runner._volume_pool.idle == 1
