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


class WorkerSettings(CodSettings):
    broker_url: str = "redis://127.0.0.1:6379/0"
    ipfs_api: str = "http://127.0.0.1:5001"
    node_id: str = Field(default_factory=socket.gethostname)
    work_dir: Path = Path("/var/lib/cod/work")
    pull_policy: str = "if-not-present"
    # Kubo keeps looking for a CID that nobody serves; give up on an input after this long.
    input_fetch_timeout_s: int = 120
    queues: str = "cod.jobs"
