"""The interface every engine (docker, wasm) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from protocol.spec import JobSpec

EXIT_TIMEOUT = 124  # as GNU `timeout` reports it
EXIT_KILLED = 137  # 128 + SIGKILL, what an out-of-memory kill looks like
NODE_LABEL = "cod.node"  # label naming the node that started a container (orphan cleanup)


class EngineError(RuntimeError):
    """The job could not be started for a reason that retrying will not fix."""


class ImageUnavailable(EngineError):
    """The image is neither present locally nor pullable under the node's pull policy."""


class EngineUnavailable(RuntimeError):
    """The engine itself (e.g. the Docker daemon) is down; worth retrying later."""


@dataclass(frozen=True)
class Mount:
    host: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class RunRequest:
    name: str  # unique per node and attempt; lets a restarted node find and remove orphans
    spec: JobSpec
    mounts: list[Mount]
    stdout: Path
    stderr: Path
    job_dir: Path  # private to this attempt (the wasm engine keeps its module there)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    reason: str | None = None  # set when the node ended the job (timeout, memory)
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class Engine(Protocol):
    def prepare(self, spec: JobSpec, job_dir: Path) -> str:
        """Make the job's image ready (a local image, a pull per policy, a fetched module) and
        return its digest. Raises ImageUnavailable, or EngineUnavailable for an outage."""
        ...

    def run(self, request: RunRequest) -> RunOutcome:
        """Run the job to completion (or its limits), writing stdout/stderr to the given files."""
        ...
