"""Every resource a job brings is capped: IPFS inputs (bytes and entries, sized before and counted
while fetching, stored in the job's capped space), an image's VOLUME paths, output file counts and
depth (published by an iterative, one-file-at-a-time stream), and memoisation only for jobs that
cannot see the network. Real Kubo, Docker and Redis; each test mounts the attack itself."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.locality import HoldingsScanner
from executor.retention import RetentionSweeper, published_results, sweep
from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec
from tests.executor.conftest import RunnerFactory, run, sh, worker_settings

MiB = 1024 * 1024
UNIXFS_DIRECTORY = base64.b64encode(b"\x08\x01").decode()  # UnixFS Data {Type: Directory}


def put_directory(kubo: KuboClient, links: list[tuple[str, str, int]]) -> str:
    """A dag-pb UnixFS directory of (name, CID, Tsize) links, built by hand: the DAG's author
    chooses every recorded size."""
    node = {"Data": {"/": {"bytes": UNIXFS_DIRECTORY}},
            "Links": [{"Hash": {"/": cid}, "Name": name, "Tsize": tsize}
                      for name, cid, tsize in sorted(links)]}
    response = httpx.post(f"{kubo.api_url}/api/v0/dag/put",
                          params={"store-codec": "dag-pb", "input-codec": "dag-json", "pin": "true"},
                          files={"file": ("node.json", json.dumps(node).encode())}, timeout=60)
    assert response.status_code == 200, response.text
    return str(response.json()["Cid"]["/"])


@pytest.fixture(scope="module")
def zeros(kubo: KuboClient) -> str:
    """One MiB of zeros: the repo holds one 256 KiB block, linked four times."""
    return kubo.add_bytes(bytes(MiB), "zeros")


def job(cid: str, **fields: object) -> JobSpec:
    return sh("du -s /inputs/big; echo read", inputs=[{"source": f"ipfs://{cid}",
                                                         "target": "/inputs/big"}], **fields)


def test_a_dag_linking_one_block_thousands_of_times_is_refused_before_it_is_fetched(
        runner: JobRunner, kubo: KuboClient, zeros: str) -> None:
    # 12,000 names for the same MiB: 12 GB streamed, from 1 MiB the attacker stored
    bomb = put_directory(kubo, [(f"f{i:05}", zeros, MiB + 200) for i in range(12_000)])
    assert kubo.stat(bomb).cumulative_size > 10 * 1024**3
    started = time.monotonic()
    outcome = run(runner, job(bomb))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith(
        f"input ipfs://{bomb} is larger than the node's input cap of {10 * 1024**3} bytes")
    assert time.monotonic() - started < 30  # sized, not streamed


def test_a_dag_that_lies_about_its_size_is_stopped_at_the_node_cap_while_streaming(
        make_runner: RunnerFactory, kubo: KuboClient, zeros: str) -> None:
    liar = put_directory(kubo, [(f"f{i:04}", zeros, 1) for i in range(200)])  # 200 MiB, "200 B"
    assert kubo.stat(liar).cumulative_size < MiB
    outcome = run(make_runner(max_input_size="32Mi"), job(liar))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith(
        f"input ipfs://{liar} is larger than the node's input cap of {32 * MiB} bytes")
    assert "it is larger than" in outcome.reason


def test_a_lying_dag_is_stopped_by_the_jobs_own_disk_and_lands_in_its_capped_space(
        runner: JobRunner, kubo: KuboClient, zeros: str) -> None:
    liar = put_directory(kubo, [(f"f{i:04}", zeros, 1) for i in range(300)])
    outcome = run(runner, job(liar, resources={"disk": "64Mi"}))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith(f"input ipfs://{liar} is larger than the ")
    assert "left for the job's inputs" in outcome.reason  # the job's volume, not the node's disk


def test_a_directory_dag_of_very_many_entries_is_stopped_at_the_file_cap(
        make_runner: RunnerFactory, kubo: KuboClient) -> None:
    empty = kubo.add_bytes(b"", "empty")
    leaf = put_directory(kubo, [(f"e{i:04}", empty, 0) for i in range(1_000)])
    # 200 x 1,000 = 200,000 entries from two small blocks (and 200 x 200 x 1,000 is one more)
    wide = put_directory(kubo, [(f"d{i:03}", leaf, 1) for i in range(200)])
    outcome = run(make_runner(max_input_files=5_000), job(wide))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith(f"input ipfs://{wide} is larger than the node's input cap")
    assert "more than 5000 files and directories" in outcome.reason


def test_an_honest_input_within_the_caps_is_still_fetched(
        make_runner: RunnerFactory, kubo: KuboClient, zeros: str) -> None:
    small = put_directory(kubo, [(f"f{i}", zeros, MiB + 200) for i in range(3)])
    outcome = run(make_runner(max_input_size="32Mi"), job(small))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/stdout").decode().split()[-1] == "read"


VOLUME_IMAGE = "cod/adversary-volume:latest"


@pytest.fixture(scope="module")
def volume_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The stack's busybox with `VOLUME /data` added (what a hostile image declares)."""
    container = docker_client.containers.create(BUSYBOX_IMAGE, "true")
    try:
        container.commit(repository=VOLUME_IMAGE.split(":")[0], tag="latest",
                         changes=["VOLUME /data"])
    finally:
        container.remove()
    yield VOLUME_IMAGE
    docker_client.images.remove(VOLUME_IMAGE, force=True)


def test_an_image_volume_is_a_capped_tmpfs_and_leaves_no_volume_behind(
        make_runner: RunnerFactory, kubo: KuboClient, docker_client: docker.DockerClient,
        volume_image: str) -> None:
    volumes_before = {v.name for v in docker_client.volumes.list()}
    spec = JobSpec(image=volume_image, cache=False, entrypoint=[
        "sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=50 2>/dev/null && echo WROTE "
                    "|| echo ENOSPC; ls -l /data/big | awk '{print $5}'"])
    outcome = run(make_runner(image_volume_size="16Mi"), spec)
    assert outcome.status == "completed", outcome.reason
    written, size = kubo.cat(f"{outcome.result_cid}/stdout").decode().split()
    assert written == "ENOSPC"
    assert int(size) <= 16 * MiB
    assert {v.name for v in docker_client.volumes.list()} == volumes_before


def test_twenty_thousand_output_files_are_published_and_the_next_job_runs(
        runner: JobRunner, kubo: KuboClient) -> None:
    outcome = run(runner, sh("cd /outputs && seq 1 20000 | xargs touch && echo done"))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/outputs/20000") == b""
    assert kubo.cat(f"{outcome.result_cid}/outputs/1") == b""
    after = run(runner, sh("echo next"))
    assert after.status == "completed", after.reason
    assert kubo.cat(f"{after.result_cid}/stdout") == b"next\n"


def test_output_file_count_over_the_cap_fails_with_the_reason(make_runner: RunnerFactory) -> None:
    outcome = run(make_runner(max_output_files=1_000), sh("cd /outputs && seq 1 2000 | xargs touch"))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith("output 'outputs' has more than 1000 files and directories")
    assert outcome.reason.endswith("nothing was published")


def deep(levels: int, name: str) -> JobSpec:
    """`/outputs/x/name/name/…/f`, built bottom up (so no path the shell handles gets long)."""
    return sh(f"cd /outputs; mkdir x; echo bottom > x/f; i=0; while [ $i -lt {levels} ]; do "
              f"mkdir y && mv x y/{name} && mv y x || exit 3; i=$((i+1)); done; echo built")


def test_a_2000_deep_output_chain_fails_with_the_depth_cap_and_the_worker_lives_on(
        runner: JobRunner, kubo: KuboClient) -> None:
    outcome = run(runner, deep(2000, "d"))
    assert outcome.status == "failed", outcome.exit_code
    assert outcome.reason is not None
    assert outcome.reason.startswith("output 'outputs' has directories nested deeper than 256 "
                                     "levels")
    after = run(runner, sh("echo next"))
    assert after.status == "completed", after.reason


def test_an_output_tree_longer_than_path_max_within_the_depth_cap_is_published(
        runner: JobRunner, kubo: KuboClient) -> None:
    name = "n" * 60  # 200 levels of 61 characters: 12,200-character paths (PATH_MAX is 4,096)
    outcome = run(runner, deep(200, name))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/stdout") == b"built\n"
    path = "/".join([name] * 200)
    assert kubo.cat(f"{outcome.result_cid}/outputs/x/{path}/f") == b"bottom\n"


def test_a_networked_job_is_not_memoised(make_runner: RunnerFactory) -> None:
    runner = make_runner(allow_network=True)
    nonce = time.time_ns()
    networked = sh(f"echo {nonce}", network="full", cache=True)
    first, second = run(runner, networked), run(runner, networked)
    assert first.status == second.status == "completed", (first.reason, second.reason)
    assert not second.cached
    offline = sh(f"echo {nonce}", cache=True)  # the same job without the network is memoised
    first, second = run(runner, offline), run(runner, offline)
    assert first.status == "completed" and second.cached
    assert second.result_cid == first.result_cid


def test_results_are_unpinned_after_the_operators_retention(
        make_runner: RunnerFactory, kubo: KuboClient, services: DevStack, tmp_path: Path) -> None:
    runner = make_runner(result_retention_s=3600)
    published = published_results(worker_settings(services, tmp_path / "work"))
    old = run(runner, sh(f"echo old {time.time_ns()}"))
    between = time.time()
    new = run(runner, sh(f"echo new {time.time_ns()}"))
    assert old.result_cid and new.result_cid
    assert kubo.is_pinned(old.result_cid) and kubo.is_pinned(new.result_cid)
    assert sweep(kubo, published, retention_s=3600, now=between + 3600) == 1
    assert not kubo.is_pinned(old.result_cid)
    assert kubo.is_pinned(new.result_cid)
    # the worker's own sweep thread, with a short retention
    sweeper = RetentionSweeper(kubo, published, retention_s=0.5, interval_s=0.2)
    sweeper.start()
    try:
        deadline = time.monotonic() + 30
        while kubo.is_pinned(new.result_cid):
            assert time.monotonic() < deadline, "the sweep never unpinned the result"
            time.sleep(0.1)
    finally:
        sweeper.stop()
    assert published.count() == 0


def test_a_heartbeat_carries_a_bounded_number_of_holdings_the_largest(kubo: KuboClient) -> None:
    for i in range(12):  # a stream of small results, and three large datasets
        kubo.add_bytes(f"small {i} {time.time_ns()}".encode(), "small")
    large = [kubo.add_bytes(bytes([i]) * (2 * MiB + i), "large") for i in range(3)]
    everything = HoldingsScanner(kubo, limit=10**9)
    full: dict[str, int] = {}
    while len(full) < len(kubo.pinned()):  # sizes new pins a batch per scan
        full = everything.scan()
    assert len(full) > 5
    holdings = HoldingsScanner(kubo, limit=5).scan()
    assert holdings == dict(sorted(full.items(), key=lambda item: (-item[1], item[0]))[:5])
    assert min(holdings.values()) >= min(full[cid] for cid in large)
