"""Runs one job on this node: fetch inputs, run the engine, publish the result directory.

The result directory has the layout `bacalhau job get` users know: `stdout`, `stderr`, `exitCode`
and one folder per output name.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from executor.engines.base import NODE_LABEL, Engine, EngineError, Mount, RunRequest
from executor.ipfs import IpfsError, IpfsUnavailable, KuboClient
from executor.spec import InputSource, JobSpec, SpecError, parse_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """What the executor hands back to the bridge. `status` is `completed` or `failed`."""

    job_key: str
    status: str
    node: str
    result_cid: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InputUnavailable(RuntimeError):
    """An input could not be fetched for a reason retrying will not fix (bad CID, 404, …)."""


class JobRunner:
    def __init__(
        self, kubo: KuboClient, engine: Engine, work_dir: Path, node_id: str,
        input_fetch_timeout_s: int = 120,
    ) -> None:
        self._kubo = kubo
        self._engine = engine
        self._work_dir = work_dir
        self._node_id = node_id
        self._fetch_timeout = input_fetch_timeout_s

    def run(self, job_key: str, spec_text: str, attempt: str = "0") -> JobOutcome:
        """Run a job. Raises IpfsUnavailable/EngineUnavailable for outages worth a retry;
        every problem with the job itself ends as a `failed` outcome with a clear reason."""
        started = time.monotonic()

        def outcome(status: str, **fields: Any) -> JobOutcome:
            return JobOutcome(job_key, status, self._node_id,
                              duration_s=round(time.monotonic() - started, 3), **fields)

        try:
            spec = parse_spec(spec_text)
        except SpecError as exc:
            return outcome("failed", reason=str(exc))
        if spec.engine != "docker":
            return outcome("failed", reason=f"engine '{spec.engine}' is not available on this node")

        job_dir = self._work_dir / _safe_name(f"{job_key}-{attempt}")
        shutil.rmtree(job_dir, ignore_errors=True)
        try:
            result_dir = job_dir / "result"
            result_dir.mkdir(parents=True)
            try:
                mounts = self._fetch_inputs(spec, job_dir / "inputs")
            except InputUnavailable as exc:
                return outcome("failed", reason=str(exc))
            for output in spec.outputs:
                out_dir = result_dir / output.name
                out_dir.mkdir()
                mounts.append(Mount(out_dir, output.path, read_only=False))
            request = RunRequest(
                name=_safe_name(f"cod-{job_key}-{attempt}"), spec=spec, mounts=mounts,
                stdout=result_dir / "stdout", stderr=result_dir / "stderr",
                labels={NODE_LABEL: self._node_id},
            )
            try:
                run = self._engine.run(request)
            except EngineError as exc:
                return outcome("failed", reason=str(exc))
            notes = [run.reason] if run.reason else []
            if run.stdout_truncated:
                notes.append("stdout truncated at the node's log cap")
            if run.stderr_truncated:
                notes.append("stderr truncated at the node's log cap")
            if notes:
                with (result_dir / "stderr").open("a") as stderr:
                    stderr.writelines(f"\ncod: {note}\n" for note in notes)
            (result_dir / "exitCode").write_text(f"{run.exit_code}\n")
            cid = self._kubo.add_path(result_dir)
            self._kubo.stat(cid)  # retrievable before it is announced
            return outcome("completed", result_cid=cid, exit_code=run.exit_code, reason=run.reason)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _fetch_inputs(self, spec: JobSpec, inputs_dir: Path) -> list[Mount]:
        mounts = []
        for index, source in enumerate(spec.inputs):
            local = inputs_dir / str(index)
            self._fetch(source, local)
            mounts.append(Mount(local, source.target, read_only=True))
        return mounts

    def _fetch(self, source: InputSource, destination: Path) -> None:
        if source.source.startswith("ipfs://"):
            ipfs_path = source.source.removeprefix("ipfs://")
            try:
                self._kubo.get(ipfs_path, destination, timeout_s=self._fetch_timeout)
            except IpfsUnavailable:
                raise
            except IpfsError as exc:
                raise InputUnavailable(f"input {source.source} not available: {exc}") from exc
            return
        raise InputUnavailable(f"input {source.source}: URL inputs are not supported on this node")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200]
