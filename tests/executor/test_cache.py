"""Memoisation: an identical job returns the earlier result CID without running again."""

from __future__ import annotations

from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from tests.executor.conftest import RunnerFactory, run, sh

# Different bytes on every run: a second run would publish a different CID.
RANDOM_JOB = "head -c 32 /dev/urandom | od -An -tx1 > /outputs/random.txt; cat /inputs/in.txt"


def test_identical_job_is_not_run_again(runner: JobRunner, kubo: KuboClient) -> None:
    cid = kubo.add_bytes(b"input\n", "in.txt")
    spec = sh(RANDOM_JOB, cache=True, inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/in.txt"}])
    first = run(runner, spec)
    second = run(runner, spec)
    assert first.status == second.status == "completed"
    assert (first.cached, second.cached) == (False, True)
    assert second.result_cid == first.result_cid and second.exit_code == first.exit_code == 0


def test_opting_out_or_changing_anything_runs_again(runner: JobRunner, kubo: KuboClient) -> None:
    base = sh(RANDOM_JOB, cache=True, inputs=[{"source": "data:,one", "target": "/inputs/in.txt"}])
    first = run(runner, base)
    opted_out = run(runner, base.model_copy(update={"cache": False}))
    other_env = run(runner, base.model_copy(update={"env": {"X": "1"}}))
    other_input = run(runner, sh(RANDOM_JOB, cache=True,
                                 inputs=[{"source": "data:,two", "target": "/inputs/in.txt"}]))
    assert not (opted_out.cached or other_env.cached or other_input.cached)
    assert len({first.result_cid, opted_out.result_cid, other_env.result_cid,
                other_input.result_cid}) == 4


def test_failures_and_limit_kills_are_not_remembered(make_runner: RunnerFactory) -> None:
    runner = make_runner()
    spec = sh("exit 3", cache=True)
    assert run(runner, spec).exit_code == 3
    assert not run(runner, spec).cached
