"""Each sandbox limit, tested by a real container trying to break it (real Docker, Kubo, Redis)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import docker

from devstack.stack import DevStack
from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec
from tests.executor.conftest import NODE, RunnerFactory, run, sh


def result(kubo: KuboClient, cid: str | None, path: str) -> str:
    assert cid is not None
    return kubo.cat(f"{cid}/{path}").decode()


def test_no_network_a_connection_to_the_nodes_services_fails(
        runner: JobRunner, kubo: KuboClient, services: DevStack) -> None:
    # the node's own Kubo API listens on the host's loopback: a job must not reach it
    port = urlparse(services.env["COD_IPFS_API"]).port
    outcome = run(runner, sh(f"ls /sys/class/net; nc -w 3 127.0.0.1 {port} </dev/null "
                             "&& echo CONNECTED || echo REFUSED"))
    assert outcome.status == "completed", outcome.reason
    assert result(kubo, outcome.result_cid, "stdout").split() == ["lo", "REFUSED"]


def test_networked_job_is_refused_by_a_node_that_does_not_allow_it(runner: JobRunner) -> None:
    outcome = run(runner, sh("echo hi", network="full"))
    assert outcome.status == "failed"
    assert outcome.reason == f"node {NODE} does not run networked jobs"


def test_inputs_are_read_only_outputs_writable_root_read_only(
        runner: JobRunner, kubo: KuboClient) -> None:
    cid = kubo.add_bytes(b"data\n", "data.txt")
    script = (
        "cat /inputs/data.txt; "
        "echo x > /inputs/data.txt 2>/dev/null && echo INPUT-WRITTEN || echo input-ro; "
        "touch /etc/evil 2>/dev/null && echo ROOT-WRITTEN || echo root-ro; "
        "echo ok > /tmp/t && echo tmp-rw; "
        "echo out > /outputs/o.txt && echo out-rw; "
        # every mount point the job sees: none but its own and Docker's standard ones
        "awk '{print $5}' /proc/self/mountinfo | sort -u | tr '\\n' ' '"
    )
    spec = sh(script, inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/data.txt"}])
    outcome = run(runner, spec)
    assert outcome.status == "completed", outcome.reason
    lines = result(kubo, outcome.result_cid, "stdout").splitlines()
    assert lines[:5] == ["data", "input-ro", "root-ro", "tmp-rw", "out-rw"]
    allowed = {"/", "/inputs/data.txt", "/outputs", "/tmp", "/etc/hosts", "/etc/hostname",
               "/etc/resolv.conf", "/dev", "/proc", "/sys"}
    seen = set(lines[5].split())
    assert {m for m in seen if not m.startswith(("/dev/", "/proc/", "/sys/"))} <= allowed
    assert result(kubo, outcome.result_cid, "outputs/o.txt") == "out\n"


def test_no_capabilities_and_no_new_privileges(runner: JobRunner, kubo: KuboClient) -> None:
    outcome = run(runner, sh("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                             "chown 1 /tmp 2>/dev/null && echo CHOWNED || echo no-chown"))
    out = result(kubo, outcome.result_cid, "stdout").split()
    assert out == ["CapEff:", "0000000000000000", "CapBnd:", "0000000000000000",
                   "NoNewPrivs:", "1", "no-chown"]


def test_cgroup_limits_follow_resources(runner: JobRunner, kubo: KuboClient) -> None:
    g = "/sys/fs/cgroup"  # cgroup v2, else v1
    spec = sh(f"cat {g}/cpu.max 2>/dev/null || echo $(cat {g}/cpu/cpu.cfs_quota_us "
              f"{g}/cpu/cpu.cfs_period_us); cat {g}/memory.max 2>/dev/null || "
              f"cat {g}/memory/memory.limit_in_bytes; cat {g}/pids.max 2>/dev/null || "
              f"cat {g}/pids/pids.max", resources={"cpu": 0.5, "memory": "64Mi"})
    out = result(kubo, run(runner, spec).result_cid, "stdout").splitlines()
    assert out == ["50000 100000", str(64 * 1024**2), "64"]


def test_fork_bomb_is_contained_and_the_node_keeps_working(
        runner: JobRunner, kubo: KuboClient) -> None:
    bomb = sh("bomb() { bomb | bomb & }; bomb; sleep 4; echo survived",
              timeout=8, resources={"cpu": 0.5})
    outcome = run(runner, bomb)
    assert outcome.status == "completed"  # contained: the container ends, nothing else does
    after = run(runner, sh("echo fine"))
    assert result(kubo, after.result_cid, "stdout") == "fine\n"


def test_output_past_its_cap_fails_clearly_and_the_node_keeps_working(
        runner: JobRunner, kubo: KuboClient, tmp_path: Path) -> None:
    spec = sh("dd if=/dev/zero of=/outputs/big bs=1M count=64 2>&1; echo done",
              resources={"disk": "8Mi"})
    outcome = run(runner, spec)
    assert outcome.status == "failed"
    assert outcome.reason == ("output exceeded the cap of 8388608 bytes (resources.disk); "
                              "nothing was published")
    with open("/proc/self/mountinfo") as mounts:  # its filesystem is gone, or wiped and pooled
        left = [m for m in mounts.read().splitlines() if str(tmp_path / "work") in m]
    assert all("/volume-pool/" in m for m in left)
    pooled = [Path(m.split()[4]) for m in left]
    assert all(sorted(os.listdir(p)) == ["lost+found", "result"] for p in pooled)
    assert all(os.listdir(p / "result") == [] for p in pooled)
    after = run(runner, sh("echo fine > /outputs/f", resources={"disk": "8Mi"}))
    assert result(kubo, after.result_cid, "outputs/f") == "fine\n"


def test_stdout_past_the_log_cap_is_truncated_and_flagged(
        runner: JobRunner, kubo: KuboClient) -> None:
    outcome = run(runner, sh("yes 0123456789 | head -c 5000000; echo err >&2"))
    assert outcome.status == "completed"
    assert len(kubo.cat(f"{outcome.result_cid}/stdout")) == 1024 * 1024
    assert result(kubo, outcome.result_cid, "stderr") == (
        "err\n\ncod: stdout truncated at the node's log cap of 1048576 bytes\n")


def test_timeout_kills_and_every_container_is_removed(
        runner: JobRunner, kubo: KuboClient, docker_client: docker.DockerClient) -> None:
    outcome = run(runner, sh("echo started; sleep 60", timeout=2))
    assert outcome.exit_code == 124
    assert "exceeded the job timeout of 2 s" in result(kubo, outcome.result_cid, "stderr")
    assert docker_client.containers.list(all=True, filters={"label": f"cod.node={NODE}"}) == []


def test_image_not_present_and_not_pullable_is_a_clear_failure(
        make_runner: RunnerFactory) -> None:
    for policy in ("never", "if-not-present"):
        outcome = run(make_runner(pull_policy=policy), JobSpec(image="cod/absent:1"))
        assert outcome.status == "failed"
        assert outcome.reason == "image not available: cod/absent:1"
