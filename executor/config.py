"""Worker settings: `COD_*` environment variables, optionally a TOML file named by `COD_CONFIG`.

The bridge has its own settings class (`bridge.config`); both read the same variables and file, so
one file can configure a whole node.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class CodSettings(BaseSettings):
    """Base for cod's settings: env (`COD_` prefix) over TOML (`COD_CONFIG`) over defaults."""

    model_config = SettingsConfigDict(env_prefix="COD_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("COD_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)


def _default_queues() -> str:
    from executor.capacity import detect_capacity
    from executor.routing import queues_for_node

    settings = _CapacitySettings()
    capacity = detect_capacity(settings.cpus, settings.memory, settings.gpus)
    return ",".join(queues_for_node(capacity, allow_network=settings.allow_network))


class _CapacitySettings(CodSettings):
    """What a node advertises: detected, unless the operator sets a smaller figure."""

    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    allow_network: bool = False  # run jobs that ask for `network: full`


class WorkerSettings(_CapacitySettings):
    broker_url: str = "redis://127.0.0.1:6379/0"
    ipfs_api: str = "http://127.0.0.1:5001"
    node_id: str = Field(default_factory=socket.gethostname)
    work_dir: Path = Path("/var/lib/cod/work")
    pull_policy: str = "if-not-present"
    # Kubo keeps looking for a CID that nobody serves; give up on an input after this long.
    input_fetch_timeout_s: int = 120
    # The Celery queues to consume; by default those this node's capacity can serve. The node's
    # own queue (jobs sent to the data it holds, `cod.node.<node id>`) is always added.
    queues: str = Field(default_factory=_default_queues)
    # Publish the CIDs this node's Kubo holds, for locality routing (see executor.locality).
    publish_holdings: bool = True

    def consumed_queues(self) -> list[str]:
        from executor.locality import node_queue

        queues = [q for q in self.queues.split(",") if q]
        return [*queues, node_queue(self.node_id)]
    # Sandbox limits the node applies to every container.
    pids_limit: int = 256
    log_limit: str = "10Mi"  # per stream (stdout, stderr); the rest is dropped and flagged
    max_output_size: str = "10Gi"  # output cap when the spec sets no `resources.disk`
    tmp_size: str = "64Mi"  # the container's writable /tmp (its root filesystem is read-only)
    # URL inputs
    url_max_size: str = "2Gi"
    url_timeout_s: int = 300
    # Kubo outages: retry a publish in place this long before handing the job back to Celery.
    publish_retry_s: int = 120
    # Redelivery of a job whose worker died (see docs/operators.md, "Delivery settings").
    visibility_timeout_s: int = 300
    heartbeat_interval_s: float = 5.0
