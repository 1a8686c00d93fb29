"""What the routes get by dependency injection: the settings, the redactor, the chain reader (with
the ledger behind it), a Kubo client and the follower count. `create_app` puts the shared objects
on `app.state`; these functions hand them out (override them with `app.dependency_overrides`).

The reader is handed out as a getter, built on first use: FastAPI resolves dependencies before it
validates query parameters, and a chain that is down must still give 422 for a bad parameter, a
`down` check from `/healthz` and an error a route maps (`guarded`), not a failed dependency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException
from starlette.requests import Request

from bridge.chain import ChainError
from bridge.config import BridgeSettings
from cod.api.config import ApiConfig
from cod.jobs import NoSuchJob
from cod.queries import JobReader
from protocol.ipfs import KuboClient

T = TypeVar("T")


class Readers:
    """One JobReader per app, built on first use (and again after a chain error)."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._reader: JobReader | None = None

    def get(self) -> JobReader:
        with self._lock:
            if self._reader is None:
                try:
                    self._reader = JobReader(self.config.settings,
                                             scan_blocks=self.config.scan_blocks)
                except ChainError as exc:
                    raise HTTPException(503, self.config.clean(str(exc))) from None
            return self._reader


class Followers:
    """`follow` requests waiting now (all on one event loop: no lock needed)."""

    def __init__(self) -> None:
        self.waiting = 0


async def api_config(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


Config = Annotated[ApiConfig, Depends(api_config)]


async def api_settings(config: Config) -> BridgeSettings:
    return config.settings


Settings = Annotated[BridgeSettings, Depends(api_settings)]


async def cleaner(config: Config) -> Callable[[str], str]:
    return config.clean


Clean = Annotated[Callable[[str], str], Depends(cleaner)]


async def chain_reader(request: Request) -> Callable[[], JobReader]:
    readers: Readers = request.app.state.readers
    return readers.get


Reader = Annotated[Callable[[], JobReader], Depends(chain_reader)]


async def followers(request: Request) -> Followers:
    waiting: Followers = request.app.state.followers
    return waiting


FollowerCount = Annotated[Followers, Depends(followers)]


def kubo_client(settings: Settings) -> Iterator[KuboClient]:
    """A client of the configured Kubo with a short timeout (for probes), closed after the request."""
    kubo = KuboClient(settings.ipfs_api, timeout=3)
    try:
        yield kubo
    finally:
        kubo.close()


Kubo = Annotated[KuboClient, Depends(kubo_client)]


def guarded(clean: Callable[[str], str], call: Callable[[], T]) -> T:
    """`call()`, with the read side's errors as HTTP errors (texts redacted)."""
    try:
        return call()
    except NoSuchJob as exc:
        raise HTTPException(404, clean(str(exc))) from None
    except ValueError as exc:
        raise HTTPException(400, clean(str(exc))) from None
    except (ChainError, ConnectionError, OSError) as exc:
        raise HTTPException(503, clean(f"chain unreachable: {exc}")) from None
