"""Runs one job on this node: fetch inputs, run the engine, publish the result directory.

The result directory has the layout `bacalhau job get` users know: `stdout`, `stderr`, `exitCode`
and one folder per output name. It lives on a size-capped filesystem of its own (`volumes`). The
node adds nothing that differs between runs or nodes (no timings, no node names): replicas of a
job publish the same tree, hence the same CID (`protocol.ipfs.ADD_LAYOUT`). A spec's `result` file
(at most 256 bytes) is also read back as the small result delivered on-chain.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.cache import CachedResult, ResultCache, cache_key
from executor.engines.base import NODE_LABEL, Engine, EngineError, Mount, RunOutcome, RunRequest
from executor.input_cache import InputCache
from executor.locality import LocalityProbe
from executor.publish.base import Publisher
from executor.storage import InputUnavailable, StorageRegistry
from executor.volume_pool import VolumePool
from executor.volumes import InputVolume, ResultVolume, result_volume_size
from protocol.capacity import Capacity
from protocol.outcome import MAX_RESULT_BYTES, JobOutcome, OutcomeStatus
from protocol.queues import misfit
from protocol.sources import scheme_of
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


@dataclass(frozen=True)
class _Job:
    """One attempt of a job on this node, as each step of `JobRunner._run` sees it."""

    key: str
    attempt: str
    spec: JobSpec
    dir: Path  # private to this attempt, removed after it
    engine: Engine
    outcome: Callable[..., JobOutcome]  # (status, **fields) -> the outcome, timed from the start

    def cached(self, hit: CachedResult) -> JobOutcome:
        return self.outcome(OutcomeStatus.COMPLETED, result_cid=hit.result_cid,
                            exit_code=hit.exit_code, cached=True)


@dataclass(frozen=True)
class _Inputs:
    """The job's inputs, fetched: their mounts, content ids, and where they came from."""

    mounts: list[Mount]
    content_ids: list[str]
    locality: dict[str, Any]  # inputs_local, input_bytes_fetched: for jobs with IPFS inputs


@dataclass(frozen=True)
class _Ran:
    """What the engine reported, and the CID its result directory was published under."""

    run: RunOutcome
    result_cid: str
    result: bytes = b""  # the small result (the spec's `result` file), b"" if none


class JobRunner:
    """Runs one job attempt, in the order of `_run`: prepare the image, look up the cache, fetch
    the inputs (onto a capped volume, measuring what came from other nodes; IPFS inputs through
    the node's `input_cache`), look up the cache again (by fetched content), run the engine (onto
    a capped result volume, from `volume_pool` if given), check the outputs against the caps,
    publish, remember the result."""

    def __init__(
        self, engines: Mapping[str, Engine], storage: StorageRegistry, publisher: Publisher,
        policy: NodePolicy, work_dir: Path, cache: ResultCache | None = None,
        probe: LocalityProbe | None = None, input_cache: InputCache | None = None,
        volume_pool: VolumePool | None = None,
    ) -> None:
        self._probe = probe
        self._input_cache = input_cache  # IPFS inputs, kept read-only across jobs
        self._volume_pool = volume_pool  # result volumes, reused
        self._engines = engines
        self._storage = storage
        self._publisher = publisher
        self._policy = policy
        self._work_dir = work_dir
        self._cache = cache

    @property
    def node_id(self) -> str:
        return self._policy.node_id

    def close(self) -> None:
        """Unmount and remove the pooled result volumes (at worker shutdown)."""
        if self._volume_pool is not None:
            self._volume_pool.close()

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
            return self._run(_Job(job_key, attempt, spec, job_dir, self._engines[spec.engine],
                                  outcome))
        except SpecError as exc:
            return outcome(OutcomeStatus.FAILED, reason=str(exc))
        except (_Failed, EngineError, InputUnavailable) as exc:
            return outcome(OutcomeStatus.FAILED, reason=getattr(exc, "reason", None) or str(exc))
        finally:
            _remove_job_dir(job_dir)

    def _admit(self, spec: JobSpec) -> None:
        """Refuse what this node does not run (`_Failed`), or hand back what it is too small for."""
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

    def _run(self, job: _Job) -> JobOutcome:
        """The steps of an admitted job, top to bottom; each may end it with a cached result."""
        with ExitStack() as cleanup:  # the job's input volume, unmounted whatever happens
            image_id = job.engine.prepare(job.spec, job.dir)
            # Only a job that cannot see the network is a function of its inputs: memoise no other.
            # A cache entry records no small result: a job that names one always runs (for now).
            use_cache = (job.spec.cache and job.spec.network == "none" and job.spec.result is None
                         and self._cache is not None)
            known_ids = self._known_content_ids(job.spec)  # also: every scheme has a provider
            key = cache_key(job.spec, image_id, known_ids) if use_cache and all(known_ids) else None
            hit = self._lookup(key) if key is not None else None
            if hit:  # known before fetching: a hit skips the fetch too
                return job.cached(hit)
            inputs = self._fetch(job, cleanup)
            if use_cache and key is None:  # a URL input: only its fetched bytes identify it
                key = cache_key(job.spec, image_id, inputs.content_ids)
                hit = self._lookup(key)
                if hit:
                    return job.cached(hit)
            ran = self._run_and_publish(job, inputs.mounts)
            if key is not None and ran.run.exit_code == 0 and not ran.run.reason:
                self._remember(key, ran.result_cid, ran.run.exit_code)
            return job.outcome(OutcomeStatus.COMPLETED, result_cid=ran.result_cid,
                               exit_code=ran.run.exit_code, reason=ran.run.reason,
                               result=ran.result.hex(), **inputs.locality)

    def _known_content_ids(self, spec: JobSpec) -> list[str]:
        """Each input's content id as known before fetching (IPFS, inline), "" where only
        fetching can tell (a URL). Raises InputUnavailable for a source this node cannot fetch."""
        providers = [self._storage.for_source(i.source) for i in spec.inputs]
        return [p.content_id(i.source) or "" for p, i in zip(providers, spec.inputs, strict=True)]

    def _lookup(self, key: str) -> CachedResult | None:
        """A cached result of the same job that can still be retrieved, or None."""
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

    def _remember(self, key: str, result_cid: str, exit_code: int) -> None:
        if self._cache is not None:
            self._cache.put(key, CachedResult(result_cid, exit_code, self.node_id))

    def _fetch(self, job: _Job, cleanup: ExitStack) -> _Inputs:
        """Fetch the inputs into the job's capped input space, with the locality probe's
        before/after reading of the bytes Kubo received. With the node's input cache, IPFS inputs
        are mounted from it (read-only for every job), fetched into it on a miss."""
        spec, probe = job.spec, self._probe
        # A job without IPFS inputs (`held` is None) skips the probe's two Kubo round trips.
        local = probe.held(spec) if probe else None
        received_before = probe.received() if probe and local is not None else 0
        input_cap = min(self._policy.max_input_bytes, spec.resources.disk_bytes or 1 << 62)
        budget = _Budget(input_cap, self._policy.max_input_files)
        hosts: dict[int, Path] = {}
        ids: dict[int, str] = {}
        if self._input_cache is not None:  # IPFS inputs: from (or into) the node's input cache
            for index, source in enumerate(spec.inputs):
                # (a source named twice gets its own copy: one host path binds one target)
                if scheme_of(source.source) == "ipfs" and source.source not in ids.values():
                    hosts[index] = self._cached_input(source.source, budget, cleanup)
                    ids[index] = source.source  # content-addressed: the path is the content id
        rest = [i for i in range(len(spec.inputs)) if i not in hosts]
        if rest:  # the others land inside the job's capped space, whatever their DAG claims
            input_volume = InputVolume(job.dir, budget.bytes, budget.files)
            cleanup.callback(input_volume.close)
            for index in rest:
                hosts[index] = input_volume.path / str(index)
                ids[index] = self._fetch_one(spec.inputs[index].source, hosts[index], budget.bytes)
        mounts = [Mount(hosts[i], source.target, read_only=True)
                  for i, source in enumerate(spec.inputs)]
        content_ids = [ids[i] for i in range(len(spec.inputs))]
        locality: dict[str, Any] = {}
        if probe is not None and local is not None:
            locality = {"inputs_local": local,
                        "input_bytes_fetched": probe.received() - received_before}
        return _Inputs(mounts, content_ids, locality)

    def _fetch_one(self, source: str, destination: Path, cap: int) -> str:
        try:
            return self._storage.for_source(source).fetch(source, destination)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _Failed(f"input {source} does not fit the job's input cap of "
                              f"{cap} bytes") from exc
            raise

    def _cached_input(self, source: str, budget: _Budget, cleanup: ExitStack) -> Path:
        """Where the job reads an IPFS input: the cache's read-only copy, fetched into the cache
        first if it is not there (onto a capped volume of its own, sized by what is left of the
        job's input caps). Leases and private copies are let go by `cleanup`."""
        cache = self._input_cache
        assert cache is not None
        held = cache.acquire(source)
        if held is not None:
            cleanup.callback(cache.release, held)
            if held.bytes > budget.bytes or held.files > budget.files:
                raise InputUnavailable(
                    f"input {source} is larger than the {budget.bytes} bytes and {budget.files} "
                    f"files left for the job's inputs ({held.bytes} bytes, {held.files} files)")
            budget.take(held.bytes, held.files)
            return held.path
        staged = cache.stage(budget.bytes, budget.files)
        try:
            self._fetch_one(source, staged.path, budget.bytes)
            size, files = _usage(staged.path)
            held = cache.commit(source, staged, size, files)
        except BaseException:
            cache.discard(staged)
            raise
        budget.take(size, files)
        if held is None:  # not admitted (no room, no capped volume): the job's own copy
            cleanup.callback(cache.discard, staged)
            return staged.path
        cleanup.callback(cache.release, held)
        return held.path

    def _run_and_publish(self, job: _Job, input_mounts: list[Mount]) -> _Ran:
        """Run the engine onto a capped result volume, check what it wrote, add the node's notes
        and the exit code, publish; the volume is unmounted before this returns."""
        cap = job.spec.resources.disk_bytes or self._policy.max_output_bytes
        room_for_logs = 2 * self._policy.log_bytes
        pool = self._volume_pool
        pooled = pool.acquire(result_volume_size(cap, room_for_logs)) if pool else None
        volume = pooled or ResultVolume(job.dir, cap, room_for_logs=room_for_logs)
        try:
            result_dir = volume.path
            mounts = input_mounts + self._output_mounts(job.spec, result_dir)
            run = job.engine.run(RunRequest(
                name=_safe_name(f"cod-{self.node_id}-{job.key}-{job.attempt}"), spec=job.spec,
                mounts=mounts, stdout=result_dir / "stdout", stderr=result_dir / "stderr",
                job_dir=job.dir, labels={NODE_LABEL: self.node_id},
            ))
            self._check_outputs(job.spec, result_dir, cap)
            small = _read_small_result(job.spec, result_dir)
            missing = [] if small is not None or job.spec.result is None else [
                f"no small result: the job did not write {job.spec.result} (the on-chain result "
                "is empty)"]
            self._finish_result_dir(result_dir, run, cap, missing)
            return _Ran(run, self._publisher.publish(result_dir), small or b"")
        finally:
            if isinstance(volume, ResultVolume):
                volume.close()
            elif pool is not None:
                pool.release(volume)  # wiped and checked empty, or destroyed

    @staticmethod
    def _output_mounts(spec: JobSpec, result_dir: Path) -> list[Mount]:
        mounts = []
        for output in spec.outputs:
            out_dir = result_dir / output.name
            out_dir.mkdir()
            out_dir.chmod(0o777)  # writable whatever user the image runs as
            mounts.append(Mount(out_dir, output.path, read_only=False))
        return mounts

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

    def _finish_result_dir(self, result_dir: Path, run: RunOutcome, cap: int,
                           more_notes: list[str] | None = None) -> None:
        """The node's notes (why it ended the job, truncated logs, a missing small result) at the
        end of `stderr`, and `exitCode`."""
        notes = [run.reason] if run.reason else []
        notes += more_notes or []
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


@dataclass
class _Budget:
    """What is left of the job's input caps (bytes, files and directories)."""

    bytes: int
    files: int

    def take(self, size: int, files: int) -> None:
        self.bytes = max(0, self.bytes - size)
        self.files = max(0, self.files - files)


def _usage(path: Path) -> tuple[int, int]:
    """Bytes and entries of a fetched input (a file, or a directory and what it holds)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size, 1
    usage = measure(path)
    return usage.bytes, usage.files + 1


def _read_small_result(spec: JobSpec, result_dir: Path) -> bytes | None:
    """The spec's `result` file as the job wrote it, None if it wrote none (or names none). The
    job controls its outputs: no symlink is followed (at any level) and only a regular file is
    read, at most one byte past the cap. `_Failed` for anything else or over MAX_RESULT_BYTES."""
    place = spec.result_file()
    if place is None:
        return None
    output, rel = place
    *dirs, name = rel.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(result_dir / output, flags | os.O_DIRECTORY))
            for part in dirs:
                fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
            fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=fds[-1])
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP (a symlink), ENOTDIR (a file where a directory should be)
            raise _Failed(f"small result {spec.result} could not be read: it is not a regular "
                          f"file in a directory (symlinks are not followed): {exc.strerror}"
                          ) from exc
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Failed(f"small result {spec.result} is not a regular file")
        if info.st_size > MAX_RESULT_BYTES:
            raise _Failed(f"small result over {MAX_RESULT_BYTES} bytes: {spec.result} has "
                          f"{info.st_size} bytes (publish larger results in the outputs); "
                          "nothing was published")
        data = os.read(fd, MAX_RESULT_BYTES + 1)
        if len(data) > MAX_RESULT_BYTES:
            raise _Failed(f"small result over {MAX_RESULT_BYTES} bytes: {spec.result}; "
                          "nothing was published")
        return data
    finally:
        for fd in fds:
            os.close(fd)


def _remove_job_dir(job_dir: Path) -> None:
    """Iteratively (a job's tree may be deeper than shutil.rmtree can recurse)."""
    try:
        remove(job_dir)
    except OSError as exc:
        log.warning("could not remove %s: %s", job_dir, exc)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200]
