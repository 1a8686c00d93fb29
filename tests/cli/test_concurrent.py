"""Twenty `cod docker run` started at once from one key (a shell loop with `&`), against the real
stack: every request is accepted (the processes share the key's nonce) and every job completes."""

from __future__ import annotations

import os
import subprocess

from devstack.images import BUSYBOX_IMAGE
from tests.cli.conftest import COD, Cod
from tests.e2e.client import Requester

PROCESSES = 20


def test_twenty_runs_at_once_from_one_key_are_all_accepted_and_complete(
        cod: Cod, requester: Requester) -> None:
    env = {**os.environ, **cod.env}
    started = [subprocess.Popen([COD, "docker", "run", "--id-only", "--wait-timeout", "600",
                                 BUSYBOX_IMAGE, "--", "echo", f"job {n}"],
                                env=env, cwd=cod.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for n in range(PROCESSES)]
    outcomes = [(process.wait(timeout=900), *process.communicate()) for process in started]
    failed = [(code, err.strip()) for code, _, err in outcomes if code != 0]
    assert failed == [], failed  # exit 0: requested, completed, and the container exited 0
    job_ids = [int(out.split()[0]) for _, out, _ in outcomes]
    assert len(set(job_ids)) == PROCESSES
    for job_id in job_ids:
        assert requester.events("JobCompleted", job_id), job_id
