"""Runs a job as a Docker container: no network, inputs read-only, bounded CPU/memory/pids/time."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from executor.engines.base import (
    EXIT_KILLED,
    EXIT_TIMEOUT,
    NODE_LABEL,
    EngineUnavailable,
    ImageUnavailable,
    RunOutcome,
    RunRequest,
)

log = logging.getLogger(__name__)

LABEL = "cod.job"  # every container we start carries it, so orphans can be found

PULL_POLICIES = ("if-not-present", "never", "always")


class DockerEngine:
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        pull_policy: str = "if-not-present",
        pids_limit: int = 256,
        log_limit_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"pull policy must be one of {PULL_POLICIES}, not {pull_policy!r}")
        try:
            self._client = client or docker.from_env(timeout=60)
            self._client.ping()
        except DockerException as exc:
            raise EngineUnavailable(f"no Docker engine: {exc}") from exc
        self._pull_policy = pull_policy
        self._pids_limit = pids_limit
        self._log_limit = log_limit_bytes

    def ensure_image(self, image: str) -> None:
        """Use a local image as is; pull only as the policy allows; else ImageUnavailable."""
        if self._pull_policy != "always":
            try:
                self._client.images.get(image)
                return
            except ImageNotFound:
                if self._pull_policy == "never":
                    raise ImageUnavailable(f"image not available: {image}") from None
        try:
            self._client.images.pull(image)
        except (APIError, requests.RequestException) as exc:
            log.info("pull of %s failed: %s", image, exc)
            raise ImageUnavailable(f"image not available: {image}") from None

    def run(self, request: RunRequest) -> RunOutcome:
        spec = request.spec
        self.ensure_image(spec.image)
        self._remove_if_exists(request.name)
        try:
            container = self._client.containers.create(**self._create_args(request))
        except APIError as exc:
            raise EngineUnavailable(f"docker create failed: {exc.explanation or exc}") from exc
        try:
            container.start()
            reason: str | None = None
            try:
                status = container.wait(timeout=spec.timeout)
                exit_code = int(status.get("StatusCode", 1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                container.kill()
                container.wait(timeout=30)
                exit_code = EXIT_TIMEOUT
                reason = f"killed: exceeded the job timeout of {spec.timeout} s"
            container.reload()
            if reason is None and container.attrs["State"].get("OOMKilled"):
                exit_code = EXIT_KILLED
                reason = f"killed: out of memory (limit {spec.resources.memory})"
            out_cut = self._save_log(container, request.stdout, stdout=True)
            err_cut = self._save_log(container, request.stderr, stdout=False)
            return RunOutcome(exit_code, reason, out_cut, err_cut)
        finally:
            self._remove_if_exists(request.name)

    def remove_orphans(self, node_id: str) -> int:
        """Remove the containers a dead worker of this node left behind; returns how many."""
        containers = self._client.containers.list(
            all=True, filters={"label": [LABEL, f"{NODE_LABEL}={node_id}"]})
        for container in containers:
            container.remove(force=True)
        return len(containers)

    def _create_args(self, request: RunRequest) -> dict[str, Any]:
        spec = request.spec
        memory = spec.resources.memory_bytes
        return {
            "image": spec.image,
            "entrypoint": spec.entrypoint or None,
            "environment": dict(spec.env),
            "working_dir": spec.workdir,
            "name": request.name,
            "labels": {LABEL: request.name, **request.labels},
            "volumes": {
                str(m.host): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                for m in request.mounts
            },
            "network_mode": "none" if spec.network == "none" else "bridge",
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap: the memory limit is the limit
            "nano_cpus": int(spec.resources.cpu * 1e9),
            "pids_limit": self._pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "detach": True,
        }

    def _save_log(self, container: Container, path: Path, stdout: bool) -> bool:
        """Copy one log stream to `path`, at most the node's cap; True if it was truncated."""
        written = 0
        truncated = False
        with path.open("wb") as handle:
            for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True):
                room = self._log_limit - written
                if len(chunk) > room:
                    handle.write(chunk[:room])
                    truncated = True
                    break
                handle.write(chunk)
                written += len(chunk)
        return truncated

    def _remove_if_exists(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._client.containers.get(name).remove(force=True)
