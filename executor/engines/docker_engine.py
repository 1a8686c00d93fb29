"""Runs a job as a Docker container, as a guest: no network unless asked and allowed, a read-only
root filesystem, inputs read-only, one writable directory per output, no capabilities, no new
privileges, an unprivileged uid, bounded pids/memory/CPU/time, logs streamed to capped files,
always removed (with its volumes).

An image's `VOLUME` paths would become anonymous volumes on the node's disk, outside every cap and
never removed: each gets a small size-capped tmpfs instead. A spec's environment may not set the
variables that steer the engine's runtime hooks (`NVIDIA_VISIBLE_DEVICES` hands a job every GPU).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig, Ulimit

from executor.engines.base import (
    EXIT_KILLED,
    EXIT_TIMEOUT,
    NODE_LABEL,
    EngineError,
    EngineUnavailable,
    ImageUnavailable,
    RunOutcome,
    RunRequest,
)
from executor.engines.logs import CappedLog
from executor.images import ImagePolicy
from protocol.spec import JobSpec, parse_size

if TYPE_CHECKING:
    from executor.config import WorkerSettings
    from executor.storage import StorageRegistry

log = logging.getLogger(__name__)

LABEL = "cod.job"  # every container we start carries it, so orphans can be found

PULL_POLICIES = ("if-not-present", "never", "always")


@dataclass(frozen=True)
class Limits:
    """What the node imposes on every container, whatever the spec says."""

    pids: int = 256
    log_bytes: int = 10 * 1024 * 1024
    tmp_bytes: int = 64 * 1024 * 1024
    nofile: int = 4096
    user: str = "65534:65534"  # uid:gid the job runs as ("" = the image's own user)
    volume_bytes: int = 64 * 1024 * 1024  # the tmpfs over each of the image's VOLUME paths


# Read by container runtime hooks (NVIDIA, AMD, Habana), not by the job: they pick devices and
# driver capabilities. Only the node sets them (from `resources.gpu`).
ENGINE_CONTROL_PREFIXES = ("NVIDIA_", "AMD_VISIBLE_DEVICES", "HABANA_VISIBLE_DEVICES",
                           "HABANA_VISIBLE_MODULES")


def from_settings(settings: WorkerSettings, storage: StorageRegistry) -> DockerEngine:
    """The `docker` engine of `executor.engines.ENGINES`."""
    limits = Limits(pids=settings.pids_limit, log_bytes=parse_size(settings.log_limit),
                    tmp_bytes=parse_size(settings.tmp_size), user=settings.container_user,
                    volume_bytes=parse_size(settings.image_volume_size))
    return DockerEngine(pull_policy=settings.pull_policy, limits=limits,
                        image_policy=ImagePolicy.parse(settings.image_allow))


def engine_control_variables(spec: JobSpec) -> list[str]:
    """The spec's environment variables that only the node may set (pure: unit-tested)."""
    return sorted(name for name in spec.env if name.upper().startswith(ENGINE_CONTROL_PREFIXES))


def container_args(request: RunRequest, limits: Limits,
                   image_volumes: list[str] | None = None) -> dict[str, Any]:
    """The `containers.create` arguments for a request (pure: unit-tested). `image_volumes`: the
    image's `VOLUME` paths, each covered by a capped tmpfs unless a mount is already there."""
    spec = request.spec
    memory = spec.resources.memory_bytes
    tmpfs = {"/tmp": f"rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777"}
    mounted = {m.target for m in request.mounts}
    for path in image_volumes or []:
        target = path.rstrip("/") or "/"
        if target not in mounted and target not in tmpfs:
            tmpfs[target] = f"rw,nosuid,nodev,size={limits.volume_bytes},mode=1777"
    args: dict[str, Any] = {
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
        "pids_limit": limits.pids,
        "ulimits": [Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile)],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "read_only": True,
        "tmpfs": tmpfs,
        # the daemon keeps no copy of the logs (it would be uncapped): we stream them instead
        "log_config": LogConfig(type=LogConfig.types.NONE),
        "detach": True,
    }
    if limits.user:
        args["user"] = limits.user
    if spec.resources.gpu > 0:
        args["device_requests"] = [gpu_request(spec)]
    return args


def gpu_request(spec: JobSpec) -> DeviceRequest:
    """`docker run --gpus N`: N GPUs from the NVIDIA container runtime."""
    return DeviceRequest(driver="nvidia", count=spec.resources.gpu, capabilities=[["gpu"]])


class DockerEngine:
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        pull_policy: str = "if-not-present",
        limits: Limits | None = None,
        image_policy: ImagePolicy | None = None,
    ) -> None:
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"pull policy must be one of {PULL_POLICIES}, not {pull_policy!r}")
        try:
            self._client = client or docker.from_env(timeout=60)
            self._client.ping()
        except DockerException as exc:
            raise EngineUnavailable(f"no Docker engine: {exc}") from exc
        self._pull_policy = pull_policy
        self._limits = limits or Limits()
        self._image_policy = image_policy or ImagePolicy()

    def prepare(self, spec: JobSpec, job_dir: Path | None = None) -> str:
        """Use a local image as is; pull only as the policy allows; returns the image id
        (`sha256:…`, the digest of its configuration). Raises ImageUnavailable, and EngineError
        for a spec setting engine-control variables."""
        reserved = engine_control_variables(spec)
        if reserved:
            raise EngineError(f"env: {', '.join(reserved)} may not be set by a job: the node "
                              "controls the container runtime's devices (use resources.gpu)")
        image = spec.image
        policy = self._image_policy
        if not policy.allows_name(image) and not any(p.startswith("sha256:")
                                                     for p in policy.patterns):
            raise ImageUnavailable(policy.refusal(image))  # refused before any lookup or pull
        found = None
        if self._pull_policy != "always":
            try:
                found = self._client.images.get(image)
            except ImageNotFound:
                if self._pull_policy == "never":
                    raise ImageUnavailable(f"image not available: {image}") from None
            except (APIError, requests.RequestException) as exc:
                raise EngineUnavailable(f"docker: {exc}") from exc
        if found is None:
            if not policy.allows_name(image):
                raise ImageUnavailable(policy.refusal(image))  # a digest rule never pulls
            try:
                found = self._client.images.pull(image)
            except (APIError, requests.RequestException) as exc:
                log.info("pull of %s failed: %s", image, exc)
                raise ImageUnavailable(f"image not available: {image}") from None
        digests = [str(found.id), *(found.attrs.get("RepoDigests") or [])]
        if not policy.allows(image, digests):
            raise ImageUnavailable(policy.refusal(image))
        return str(found.id)

    def run(self, request: RunRequest) -> RunOutcome:
        spec = request.spec
        self.prepare(spec)
        self._remove_if_exists(request.name)
        try:
            args = container_args(request, self._limits, self._image_volumes(spec.image))
            container = self._client.containers.create(**args)
        except APIError as exc:
            if exc.status_code == 400:
                raise EngineError(f"container refused: {exc.explanation or exc}") from exc
            raise EngineUnavailable(f"docker create failed: {exc.explanation or exc}") from exc
        try:
            with CappedLog(request.stdout, self._limits.log_bytes) as out, \
                    CappedLog(request.stderr, self._limits.log_bytes) as err:
                stream = container.attach(stdout=True, stderr=True, stream=True, demux=True,
                                          logs=False)
                reader = threading.Thread(target=_copy_streams, args=(stream, out, err),
                                          daemon=True)
                reader.start()
                try:
                    container.start()
                except APIError as exc:
                    raise EngineError(f"container could not start: {exc.explanation or exc}"
                                      ) from exc
                exit_code, reason = self._wait(container, spec)
                reader.join(timeout=30)
            return RunOutcome(exit_code, reason, out.truncated, err.truncated)
        finally:
            self._remove_if_exists(request.name)

    def _wait(self, container: Container, spec: JobSpec) -> tuple[int, str | None]:
        try:
            status = container.wait(timeout=spec.timeout)
            exit_code = int(status.get("StatusCode", 1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            with contextlib.suppress(APIError):
                container.kill()
            container.wait(timeout=30)
            return EXIT_TIMEOUT, f"killed: exceeded the job timeout of {spec.timeout} s"
        container.reload()
        if container.attrs["State"].get("OOMKilled"):
            return EXIT_KILLED, f"killed: out of memory (limit {spec.resources.memory})"
        return exit_code, None

    def remove_orphans(self, node_id: str) -> int:
        """Remove the containers a dead worker of this node left behind; returns how many."""
        containers = self._client.containers.list(
            all=True, filters={"label": [LABEL, f"{NODE_LABEL}={node_id}"]})
        for container in containers:
            with contextlib.suppress(NotFound):
                container.remove(force=True, v=True)
        return len(containers)

    def _image_volumes(self, image: str) -> list[str]:
        try:
            config = self._client.images.get(image).attrs.get("Config") or {}
        except ImageNotFound:
            raise ImageUnavailable(f"image not available: {image}") from None
        except (APIError, requests.RequestException) as exc:
            raise EngineUnavailable(f"docker: {exc}") from exc
        return sorted(config.get("Volumes") or {})

    def _remove_if_exists(self, name: str) -> None:
        with contextlib.suppress(NotFound):  # one API call (not a lookup, then a remove)
            self._client.api.remove_container(name, force=True, v=True)


def _copy_streams(stream: Any, out: CappedLog, err: CappedLog) -> None:
    try:
        for stdout, stderr in stream:
            if stdout:
                out.write(stdout)
            if stderr:
                err.write(stderr)
    except (OSError, requests.RequestException) as exc:  # the container went away mid-stream
        log.debug("log stream ended: %s", exc)
