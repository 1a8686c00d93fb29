"""The app factory: the shared objects on `app.state`, the error handler, the routers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from bridge.config import BridgeSettings
from cod.api import health, jobs, logs, nodes
from cod.api.config import ApiConfig, ApiSettings
from cod.api.deps import Followers, Readers


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    config = ApiConfig.of(settings or ApiSettings())
    app = FastAPI(title="cod API", version="1",
                  description="Jobs of a cod JobManager: on-chain state merged with the "
                              "bridge's timeline, logs and results from IPFS, compute nodes.")
    app.state.config = config
    app.state.readers = Readers(config)
    app.state.followers = Followers()

    @app.exception_handler(StarletteHTTPException)
    async def problem(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every error body, whoever raised it, without the credentials of configured URLs."""
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": config.clean(detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    for module in (jobs, logs, nodes, health):
        app.include_router(module.router)
    return app
