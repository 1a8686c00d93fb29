"""Runs one job on this node: fetch inputs, run the engine, publish the result directory.

The result directory has the layout `bacalhau job get` users know: `stdout`, `stderr`, `exitCode`
and one folder per output name. It lives on a size-capped filesystem of its own (`volumes`).
"""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.cache import CachedResult, ResultCache, cache_key
from executor.engines.base import NODE_LABEL, Engine, EngineError, Mount, RunRequest
from executor.locality import LocalityProbe
from executor.publish.base import Publisher
from executor.storage import InputUnavailable, StorageRegistry
from executor.volumes import InputVolume, ResultVolume
from protocol.capacity import Capacity
from protocol.outcome import JobOutcome, OutcomeStatus
from protocol.queues import misfit
from protocol.spec import JobSpec, SpecError, parse_spec
from protocol.tree import DEFAULT_MAX_DEPTH, TreeLimitExceeded, measure, remove

log = logging.getLogger(__name__)

__all__ = ["InputUnavailable", "JobRunner", "NodePolicy", "NotForThisNode"]


@dataclass(frozen=True)
class NodePolicy:
    """What this node offers and allows."""

    node_id: str
    capacity: Capacity
    allow_network: bool = False
    max_output_bytes: int = 10 * 1024**3
    log_bytes: int = 10 * 1024**2
    max_input_bytes: int = 10 * 1024**3  # all of a job's inputs, also capped by resources.disk
    max_input_files: int = 100_000
    max_output_files: int = 100_000  # files and directories, all outputs together
    max_output_depth: int = DEFAULT_MAX_DEPTH


class NotForThisNode(RuntimeError):
    """The job is larger than this node (another node of its queue may fit it): hand it back."""


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobRunner:
    def __init__(
        self, engines: Mapping[str, Engine], storage: StorageRegistry, publisher: Publisher,
        policy: NodePolicy, work_dir: Path, cache: ResultCache | None = None,
        probe: LocalityProbe | None = None,
    ) -> None:
        self._probe = probe
        self._engines = engines
        self._storage = storage
        self._publisher = publisher
        self._policy = policy
        self._work_dir = work_dir
        self._cache = cache

    @property
    def node_id(self) -> str:
        return self._policy.node_id

    def run(self, job_key: str, spec_text: str, attempt: str = "0") -> JobOutcome:
        """Run a job. Raises IpfsUnavailable/EngineUnavailable for outages worth a retry, and
        NotForThisNode for a job this node is too small for; every problem with the job itself
        ends as a `failed` outcome with a clear reason."""
        started = time.monotonic()

        def outcome(status: OutcomeStatus, **fields: Any) -> JobOutcome:
            return JobOutcome(job_key, status, self.node_id,
                              duration_s=round(time.monotonic() - started, 3), **fields)

        job_dir = self._work_dir / _safe_name(f"{job_key}-{attempt}")
        _remove_job_dir(job_dir)
        try:
            spec = parse_spec(spec_text)
            self._admit(spec)
            job_dir.mkdir(parents=True)
            return self._run(job_key, spec, job_dir, attempt, outcome)
        except SpecError as exc:
            return outcome(OutcomeStatus.FAILED, reason=str(exc))
        except (_Failed, EngineError, InputUnavailable) as exc:
            return outcome(OutcomeStatus.FAILED, reason=getattr(exc, "reason", None) or str(exc))
        finally:
            _remove_job_dir(job_dir)

    def _admit(self, spec: JobSpec) -> None:
        if spec.engine not in self._engines:
            raise _Failed(f"engine '{spec.engine}' is not available on this node "
                          f"(it runs: {', '.join(sorted(self._engines))})")
        if spec.network != "none" and not self._policy.allow_network:
            raise _Failed(f"node {self.node_id} does not run networked jobs")
        disk = spec.resources.disk_bytes
        if disk is not None and disk > self._policy.max_output_bytes:
            raise _Failed(f"resources.disk {spec.resources.disk} exceeds the node's output cap "
                          f"of {self._policy.max_output_bytes} bytes")
        too_big = misfit(spec.resources, self._policy.capacity)
        if too_big:
            raise NotForThisNode(f"the job needs {too_big}")

    def _run(self, job_key: str, spec: JobSpec, job_dir: Path, attempt: str,
             outcome: Callable[..., JobOutcome]) -> JobOutcome:
        with ExitStack() as cleanup:  # the job's volumes, unmounted whatever happens
            return self._run_in(job_key, spec, job_dir, attempt, outcome, cleanup)

    def _run_in(self, job_key: str, spec: JobSpec, job_dir: Path, attempt: str,
                outcome: Callable[..., JobOutcome], cleanup: ExitStack) -> JobOutcome:
        engine = self._engines[spec.engine]
        image_id = engine.prepare(spec, job_dir)
        providers = [self._storage.for_source(i.source) for i in spec.inputs]
        known_ids = [p.content_id(i.source) for p, i in zip(providers, spec.inputs, strict=True)]
        # Only a job that cannot see the network is a function of its inputs: memoise no other.
        use_cache = spec.cache and spec.network == "none" and self._cache is not None
        key = None
        if use_cache and all(known_ids):  # known before fetching: a hit skips the fetch too
            key = cache_key(spec, image_id, [str(i) for i in known_ids])
            hit = self._lookup(key)
            if hit:
                return outcome(OutcomeStatus.COMPLETED, result_cid=hit.result_cid, exit_code=hit.exit_code,
                               cached=True)
        # A job without IPFS inputs (`held` is None) skips the probe's two Kubo round trips.
        probe = self._probe
        local = probe.held(spec) if probe else None
        received_before = probe.received() if probe and local is not None else 0
        input_cap = min(self._policy.max_input_bytes, spec.resources.disk_bytes or 1 << 62)
        inputs_dir = job_dir / "inputs"
        if spec.inputs:  # inputs land inside the job's capped space, whatever their DAG claims
            input_volume = InputVolume(job_dir, input_cap, self._policy.max_input_files)
            cleanup.callback(input_volume.close)
            inputs_dir = input_volume.path
        mounts, fetched_ids = self._fetch_inputs(spec, inputs_dir, input_cap)
        locality: dict[str, Any] = {}
        if probe is not None and local is not None:
            locality = {"inputs_local": local,
                        "input_bytes_fetched": probe.received() - received_before}
        if use_cache and key is None:
            key = cache_key(spec, image_id, fetched_ids)
            hit = self._lookup(key)
            if hit:
                return outcome(OutcomeStatus.COMPLETED, result_cid=hit.result_cid, exit_code=hit.exit_code,
                               cached=True)
        cap = spec.resources.disk_bytes or self._policy.max_output_bytes
        volume = ResultVolume(job_dir, cap, room_for_logs=2 * self._policy.log_bytes)
        try:
            result_dir = volume.path
            for output in spec.outputs:
                out_dir = result_dir / output.name
                out_dir.mkdir()
                out_dir.chmod(0o777)  # writable whatever user the image runs as
                mounts.append(Mount(out_dir, output.path, read_only=False))
            request = RunRequest(
                name=_safe_name(f"cod-{self.node_id}-{job_key}-{attempt}"), spec=spec,
                mounts=mounts, stdout=result_dir / "stdout", stderr=result_dir / "stderr",
                job_dir=job_dir, labels={NODE_LABEL: self.node_id},
            )
            run = engine.run(request)
            self._check_outputs(spec, result_dir, cap)
            notes = [run.reason] if run.reason else []
            if run.stdout_truncated:
                notes.append(f"stdout truncated at the node's log cap of {self._policy.log_bytes} bytes")
            if run.stderr_truncated:
                notes.append(f"stderr truncated at the node's log cap of {self._policy.log_bytes} bytes")
            try:
                if notes:
                    with (result_dir / "stderr").open("a") as stderr:
                        stderr.writelines(f"\ncod: {note}\n" for note in notes)
                (result_dir / "exitCode").write_text(f"{run.exit_code}\n")
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise _Failed(f"output exceeded the cap of {cap} bytes (resources.disk); "
                                  "nothing was published") from exc
                raise
            cid = self._publisher.publish(result_dir)
        finally:
            volume.close()
        if key is not None and self._cache is not None and run.exit_code == 0 and not run.reason:
            self._cache.put(key, CachedResult(cid, run.exit_code, self.node_id))
        return outcome(OutcomeStatus.COMPLETED, result_cid=cid, exit_code=run.exit_code, reason=run.reason,
                       **locality)

    def _check_outputs(self, spec: JobSpec, result_dir: Path, cap: int) -> None:
        """Size, file count and depth of what the job wrote, each against its cap, before any of
        it is published (the walk stops at the caps: a hostile tree costs no more than them)."""
        files_left, written = self._policy.max_output_files, 0
        for output in spec.outputs:
            try:
                usage = measure(result_dir / output.name, files_left, self._policy.max_output_depth)
            except TreeLimitExceeded as exc:
                raise _Failed(f"output '{output.name}' has {exc}: over the node's cap "
                              f"(max_output_files {self._policy.max_output_files}, max_output_depth "
                              f"{self._policy.max_output_depth}); nothing was published") from exc
            files_left -= usage.files
            written += usage.bytes
        if written > cap:
            raise _Failed(f"output exceeded the cap of {cap} bytes (resources.disk); "
                          "nothing was published")

    def _lookup(self, key: str) -> CachedResult | None:
        if self._cache is None:
            return None
        hit = self._cache.get(key)
        if hit is None:
            return None
        if not self._publisher.is_available(hit.result_cid):
            log.info("cached result %s is no longer retrievable: running again", hit.result_cid)
            self._cache.forget(key)
            return None
        return hit

    def _fetch_inputs(self, spec: JobSpec, inputs_dir: Path,
                      cap: int) -> tuple[list[Mount], list[str]]:
        mounts, ids = [], []
        for index, source in enumerate(spec.inputs):
            local = inputs_dir / str(index)
            try:
                ids.append(self._storage.for_source(source.source).fetch(source.source, local))
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _Failed(f"input {source.source} does not fit the job's input cap of "
                                  f"{cap} bytes") from exc
                raise
            mounts.append(Mount(local, source.target, read_only=True))
        return mounts, ids


def _remove_job_dir(job_dir: Path) -> None:
    """Iteratively (a job's tree may be deeper than shutil.rmtree can recurse)."""
    try:
        remove(job_dir)
    except OSError as exc:
        log.warning("could not remove %s: %s", job_dir, exc)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200]
